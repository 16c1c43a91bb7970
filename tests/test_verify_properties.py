"""Properties of the token search: whatever the case, accents and separators, a planted token is found."""

from __future__ import annotations

import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from sfr_gateway.sample import make_patients
from sfr_gateway.verify import tokens as tk

PATIENTS = make_patients(6, seed=3)
INDEX = tk.TokenIndex()
for p in PATIENTS:
    tk.add_person_name(INDEX, p.name, "patient-name")
    tk.add_identifier(INDEX, p.patient_id, "patient-id")
    tk.add_date(INDEX, p.birth_date, "birth-date", None)
PARTS = sorted({w for p in PATIENTS for w in tk.words(p.name.replace("^", " "))})
SEPARATORS = st.text(alphabet=" ^-_/.,;:()[]\\\t\n'\"", min_size=1, max_size=3)
FILLER = st.sampled_from(["CT", "THORAX", "sans injection", "1.25mm", "Contrôle", "", "PA", "j+7"])


def _vary(word: str, data: st.DataObject) -> str:
    original = next(w for p in PATIENTS for w in p.name.replace("^", " ").split() if tk.normalise(w) == word)
    choice = data.draw(st.sampled_from(["upper", "lower", "title", "strip"]))
    if choice == "strip":
        original = "".join(c for c in unicodedata.normalize("NFD", original) if not unicodedata.combining(c))
    return {"upper": original.upper(), "lower": original.lower(), "title": original.title()}.get(choice, original)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), part=st.sampled_from(PARTS), before=FILLER, after=FILLER)
def test_name_part_found_in_any_descriptor(data: st.DataObject, part: str, before: str, after: str) -> None:
    text = before + data.draw(SEPARATORS) + _vary(part, data) + data.draw(SEPARATORS) + after
    assert part in {h.token for h in INDEX.find_in_text(text)}


@settings(max_examples=100, deadline=None)
@given(patient=st.sampled_from(PATIENTS), style=st.sampled_from(["%Y%m%d", "%Y-%m-%d", "%d/%m/%Y", "%d.%m.%Y"]),
       sep=SEPARATORS)
def test_birth_date_found_in_any_rendering(patient, style: str, sep: str) -> None:  # type: ignore[no-untyped-def]
    import datetime as dt

    rendered = dt.datetime.strptime(patient.birth_date, "%Y%m%d").strftime(style)
    kinds = {h.entry.kind for h in INDEX.find_in_text(f"ne le{sep}{rendered}{sep}fin")}
    assert "birth-date" in kinds


@settings(max_examples=100, deadline=None)
@given(patient=st.sampled_from(PATIENTS), junk=st.binary(max_size=4), tail=st.binary(max_size=4),
       codec=st.sampled_from(["latin-1", "utf-8"]))
def test_patient_id_found_in_binary_bytes(patient, junk: bytes, tail: bytes, codec: str) -> None:  # type: ignore[no-untyped-def]
    from sfr_gateway.verify.walk import binary_texts

    raw = junk + patient.patient_id.encode(codec) + tail
    found = {h.token for text in binary_texts(raw) for h in INDEX.find_in_binary(text)}
    assert patient.patient_id in found
