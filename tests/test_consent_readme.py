"""The README's consent section stays true: its CSV example imports, every command is documented."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from consent_fixtures import ledger_fixture  # noqa: F401

from sfr_gateway.cli.consent import consent as consent_group
from sfr_gateway.consent import registry as lib
from sfr_gateway.consent.csvimport import STATUS_WORDS, status_word
from sfr_gateway.ledger import Ledger

README = Path(__file__).resolve().parent.parent / "README.md"


def section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("### consent")
    return text[start:text.index("\n### ", start + 1)]


def test_every_consent_command_is_documented() -> None:
    doc = section()
    for name in consent_group.commands:
        assert f"`consent {name}" in doc, name


def test_readme_csv_example_imports(ledger: Ledger, tmp_path: Path) -> None:
    example = re.search(r"```csv\n(.*?)```", section(), re.DOTALL)
    assert example
    path = tmp_path / "example.csv"
    path.write_text(example.group(1), encoding="utf-8")
    report = lib.import_csv(ledger, path, today=dt.date(2026, 1, 1))
    assert report.rejected == [] and report.recorded == 2
    assert lib.current_status(ledger, "00123457", "CHU-EXEMPLE") == "informed"


def test_documented_french_status_words_are_accepted() -> None:
    doc = section()
    words = doc[doc.index("Status words:"):doc.index("are refused on purpose")]
    for word in re.findall(r"`([^`]+)`", words):
        for variant in (word.replace("(e)", ""), word.replace("(e)", "e")):
            if variant in ("oui", "non", "yes", "no"):
                continue
            assert status_word(variant) is not None, variant
    assert all(status_word(w) == s for w, s in STATUS_WORDS.items())
