"""Clean Descriptors / Clean Structured Content remove every identifying value of the instance
(issue 15): names, IDs, dates, addresses, institutions, physicians, operators and telephone
numbers, found at any depth, in whatever form they are written in the free text."""

from __future__ import annotations

from pydicom.dataset import Dataset

from sfr_gateway.deid import deidentify_file
from sfr_gateway.deid.text import PhiTokens, clean_text
from tests.deid_fixtures import KEYS_A, minimal_ct, norm, plan_for, reread, sequence_of, to_bytes


def _planted() -> Dataset:
    ds = minimal_ct(name="DUPONT-LEFÈVRE^Marie-Hélène")
    ds.PatientAddress = "12 rue des Lilas, 33600 Pessac"
    ds.PatientTelephoneNumbers = "05 56 79 56 79"
    ds.InstitutionName = "Clinique Bel-Air Mérignac"
    ds.InstitutionalDepartmentName = "Service de Pneumologie Haut-Lévêque"
    ds.OperatorsName = "GARNIER^Paul"
    ds.PerformingPhysicianName = "ROUSSEAU^Claire"
    ds.AdmissionID = "ADM-55731"
    ds.ReferringPhysicianName = "MARTIN^Sophie"
    other = Dataset()
    other.PatientID = "IPP-880021"  # an ID found only in a nested sequence
    ds.OtherPatientIDsSequence = sequence_of(other)
    request = Dataset()
    request.RequestedProcedureID = "RP7731"
    request.ScheduledProcedureStepID = "SPS4410"
    physician = Dataset()
    physician.PersonName = "BERNARD^Lucien"  # a name found only two levels down
    request.RequestingPhysicianIdentificationSequence = sequence_of(physician)
    ds.RequestAttributesSequence = sequence_of(request)
    ds.PatientBirthDate = "19600102"
    ds.StudyDate = "20200312"
    return ds


PLANTED = [
    "dupont", "lefevre", "marie", "helene", "lilas", "33600", "pessac", "79 56 79", "0556795679", "bel-air",
    "merignac", "leveque", "garnier", "rousseau", "claire", "adm-55731", "55731", "adm55731", "880021", "rp7731",
    "sps4410", "bernard", "lucien", "martin", "sophie", "12345678", "acc778899", "s4455", "12 mars 2020",
    "2020-03-12", "12/03/2020", "20200312", "02/01/1960", "2 janvier 1960", "march 12, 2020",
]


def test_the_issue_case_a_city_from_the_patient_address_does_not_survive() -> None:
    ds = minimal_ct(name="DUPONT-LEFÈVRE^Marie")
    ds.PatientAddress = "12 rue des Lilas, 33600 Pessac"
    ds.PatientComments = "Patiente DUPONT-LEFÈVRE, domicile Pessac"
    result = deidentify_file(to_bytes(ds), plan_for("sfr-covid"), KEYS_A)
    out = reread(result.data)
    assert out.PatientComments == "Patiente, domicile"
    assert b"Pessac" not in result.data and b"DUPONT" not in result.data


def test_every_identifying_value_of_the_instance_leaves_every_cleaned_text() -> None:
    ds = _planted()
    comments = (
        "Patiente Dupont-Lefevre Marie-Helene (IPP 880021, adm ADM55731, acc ACC778899, etude S4455, "
        "demande RP7731 / SPS4410), nee le 2 janvier 1960 (02/01/1960), domicile 12 rue des Lilas 33600 PESSAC, "
        "tel 05.56.79.56.79 ou +33 5 56 79 56 79. Adressee par Dr Martin Sophie et Dr BERNARD Lucien, "
        "clinique Bel-Air Merignac, Haut-Leveque. Manipulateur Garnier, Dr Rousseau Claire. Examen du "
        "12 mars 2020 (2020-03-12, 12/03/2020, 20200312, March 12, 2020): TDM THORAX SANS INJECTION, "
        "nodule 12 mm lobe inferieur droit, controle a 3 mois. Dossier 12345678."
    )
    ds.PatientComments = comments
    ds.ImageComments = "TDM THORAX 1.25 mm"
    item = Dataset()
    item.TextValue = "Compte rendu Dupont Marie, Pessac"
    content = Dataset()
    content.ContentSequence = sequence_of(item)
    ds.AcquisitionContextSequence = sequence_of(content)
    result = deidentify_file(to_bytes(ds), plan_for("basic", "clean-descriptors", "clean-structured-content"), KEYS_A)
    out = reread(result.data)
    cleaned = norm(str(out.PatientComments))
    for token in PLANTED:
        assert norm(token) not in cleaned, (token, cleaned)
    for clinical in ("tdm thorax sans injection", "nodule 12 mm lobe inferieur droit", "controle a 3 mois"):
        assert clinical in cleaned, (clinical, cleaned)
    assert out.ImageComments == "TDM THORAX 1.25 mm"  # clinical text kept byte for byte
    # a Text Value (not in Table E.1-1) inside a sequence being cleaned is cleaned too
    assert out.AcquisitionContextSequence[0].ContentSequence[0].TextValue == "Compte rendu"


def test_names_ids_places_and_numbers_as_written() -> None:
    tokens = PhiTokens()
    tokens.add_value("DUPONT-LEFÈVRE Marie", split_words=True)
    tokens.add_value("AB-1234", split_words=True)
    tokens.add_place("12 rue des Lilas, 33600 Pessac", frozenset({"rue", "des"}))
    tokens.add_number("+33 (0)5 56 79 56 79")
    frozen = tokens.freeze()
    assert clean_text("Mme dupont-lefevre, AB1234 / ab-1234", frozen) == "Mme"
    assert clean_text("vit a PESSAC (33600), rue des lilas", frozen) == "vit a, rue des"
    assert clean_text("appeler le 0556795679 ou 05-56-79-56-79", frozen) == "appeler le ou"
    assert clean_text("12 coupes de 1.25 mm, 56 images", frozen) == "12 coupes de 1.25 mm, 56 images"
    assert clean_text("revu en mars 2021 et le 1er avril 2021", frozen) == "revu en et le"
