"""What ``pull`` asks the PACS (C-FIND identifiers) and how it judges the answers.

Study level: one query per releasable patient (Patient ID, the collection's date window), the
answers kept only when the Patient ID is exactly the one asked and the issuer matches (the PACS's
own, or ``[pacs] issuer`` when it returns none). Series level: the selection rules
(``select.eligibility`` without the SOP Class, which a series query does not name) decide which
series to retrieve; a PACS that answers no series query gets the study judged on its
description. No pynetdicom here: identifiers are pydicom datasets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydicom.dataset import Dataset

from ..home.config import SelectionRules
from ..scan.eligibility import InstanceFacts, eligibility
from ..scan.header import value_text

_WILDCARDS = set("*?\\")


@dataclass(frozen=True)
class SeriesAnswer:
    series_uid: str
    instances: int | None
    exclusion: str | None  # None: eligible


@dataclass
class StudyAnswer:
    """One study of a releasable patient as the PACS described it."""

    study_uid: str
    patient_id: str
    issuer: str
    study_date: str
    description: str
    modalities: tuple[str, ...]
    instances: int | None
    series: list[SeriesAnswer] = field(default_factory=list)
    series_answered: bool = False

    @property
    def eligible_series(self) -> list[SeriesAnswer]:
        return [s for s in self.series if s.exclusion is None]


def queryable(patient_id: str) -> bool:
    """A Patient ID with a C-FIND wildcard or a backslash would match other patients: never asked."""
    return bool(patient_id) and not (_WILDCARDS & set(patient_id))


def date_range(rules: SelectionRules) -> str:
    """The collection window as a DA range (``YYYYMMDD-YYYYMMDD``, an open end left empty)."""
    if not rules.date_from and not rules.date_to:
        return ""
    start = rules.date_from.strftime("%Y%m%d") if rules.date_from else ""
    end = rules.date_to.strftime("%Y%m%d") if rules.date_to else ""
    return f"{start}-{end}"


def study_query(patient_id: str, rules: SelectionRules) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientID = patient_id
    ds.IssuerOfPatientID = ""
    ds.StudyInstanceUID = ""
    ds.StudyDate = date_range(rules)
    ds.StudyDescription = ""
    ds.ModalitiesInStudy = ""
    ds.NumberOfStudyRelatedInstances = ""
    return ds


def series_query(study_uid: str) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "SERIES"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = ""
    ds.Modality = ""
    ds.SeriesDescription = ""
    ds.BodyPartExamined = ""
    ds.ProtocolName = ""
    ds.SeriesNumber = ""
    ds.NumberOfSeriesRelatedInstances = ""
    return ds


def _text(ds: Dataset, keyword: str) -> str:
    return value_text(ds, keyword)  # a malformed value in an answer is treated as absent


def _count(ds: Dataset, keyword: str) -> int | None:
    try:
        return int(_text(ds, keyword))
    except ValueError:
        return None


def study_answer(ds: Dataset, asked_id: str, asked_issuer: str, default_issuer: str) -> StudyAnswer | str:
    """The study, or why the answer is not this patient's (``other-patient``, ``issuer-mismatch``,
    ``no-study-uid``)."""
    if _text(ds, "PatientID") != asked_id:
        return "other-patient"
    issuer = _text(ds, "IssuerOfPatientID") or default_issuer
    if issuer != asked_issuer:
        return "issuer-mismatch"
    uid = _text(ds, "StudyInstanceUID")
    if not uid:
        return "no-study-uid"
    modalities = tuple(m.strip().upper() for m in _text(ds, "ModalitiesInStudy").split("\\") if m.strip())
    return StudyAnswer(study_uid=uid, patient_id=asked_id, issuer=issuer, study_date=_text(ds, "StudyDate"),
                       description=_text(ds, "StudyDescription"), modalities=modalities,
                       instances=_count(ds, "NumberOfStudyRelatedInstances"))


def study_exclusion(study: StudyAnswer, rules: SelectionRules) -> str | None:
    """What the study level can rule out: modality (when the PACS names them) and the date."""
    if study.modalities and not set(study.modalities) & set(rules.modalities):
        return "modality"
    # Only the date is left to judge here: the modality is taken as one the rules accept and the
    # body part as chest (both are decided per series).
    facts = InstanceFacts(modality=rules.modalities[0] if rules.modalities else "", body_part="CHEST",
                          study_date=study.study_date)
    return eligibility(facts, rules, sop_class_known=False)


def judge_series(study: StudyAnswer, answers: list[Dataset], rules: SelectionRules) -> None:
    """Fill ``study.series`` from series-level answers, each judged by the selection rules."""
    study.series_answered = bool(answers)
    for ds in answers:
        uid = _text(ds, "SeriesInstanceUID")
        if not uid or _text(ds, "StudyInstanceUID") not in ("", study.study_uid):
            continue
        facts = InstanceFacts(modality=_text(ds, "Modality").upper(), body_part=_text(ds, "BodyPartExamined").upper(),
                              study_date=study.study_date, study_description=study.description,
                              series_description=_text(ds, "SeriesDescription"),
                              protocol_name=_text(ds, "ProtocolName"))
        study.series.append(SeriesAnswer(uid, _count(ds, "NumberOfSeriesRelatedInstances"),
                                         eligibility(facts, rules, sop_class_known=False)))


def whole_study_exclusion(study: StudyAnswer, rules: SelectionRules) -> str | None:
    """For a PACS that answers no series query: the study judged on its own description."""
    accepted = [m for m in study.modalities if m in rules.modalities]
    modality = accepted[0] if accepted else ("" if study.modalities or not rules.modalities else rules.modalities[0])
    facts = InstanceFacts(modality=modality, study_date=study.study_date, study_description=study.description)
    return eligibility(facts, rules, sop_class_known=False)


def summary(study: StudyAnswer) -> dict[str, Any]:
    """Counts only (no UIDs, no patient values), for reports."""
    return {"series": len(study.series), "eligible_series": len(study.eligible_series), "instances": study.instances}
