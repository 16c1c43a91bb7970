"""What is held back from release, and why: the listing behind `status` and `quarantine list`.

Four kinds, each with a reason an operator can act on (paths and pseudonyms, never values):
studies a run held back (an unexpected failure; retried at every run), files held back because
another file has their SOP Instance UID with other content (until the file changes), instances
the engine refused (corrupt, unsupported: see HOME/quarantine/<id>.json), and files the scan
could not read at all (not DICOM, truncated, no permission: until they change or are removed).
"""

from __future__ import annotations

from typing import Any

from ..ledger import Ledger
from ..ledger import held as sql
from ..scan.header import UNREADABLE_REASONS
from .bulkhead import HELD_REASONS
from .duplicates import CONFLICT

MEANINGS = {
    **HELD_REASONS,
    CONFLICT: "another file, indexed first, has the same SOP Instance UID with other content: it is the one "
              "released. Check which is right (a modality reusing UIDs? a wrong re-export?); fix or remove the "
              "wrong file; a changed file is looked at again by the next run",
}


def _path(raw: bytes | None) -> str:
    return raw.decode("utf-8", "backslashreplace") if raw is not None else ""


UNREADABLE_ADVICE = ("re-export the file from the PACS (or fix its permissions); a changed file is read again by "
                     "the next scan, a removed one leaves this list")


def unusable(ledger: Ledger) -> dict[str, int]:
    """How many files the gateway cannot use now, by kind, and their total (``run``'s summary
    names it at every run while it is not zero)."""
    c = sql.counts(ledger)
    out = {"unreadable": sql.unreadable_count(ledger), "held_back": c["files"], "refused": sql.refused_in_export(ledger)}
    return {**out, "total": sum(out.values())}


def held_back(ledger: Ledger, limit: int | None = None, refused: bool = False,
              unreadable: bool = False) -> dict[str, Any]:
    """Counts, and the held-back items (studies first, then files; ``refused`` adds the
    instances the engine quarantined, ``unreadable`` the files the scan could not read),
    ``limit`` of them at most."""
    items: list[dict[str, Any]] = []
    for st in sql.held_studies(ledger):
        items.append({"kind": "study", "pseudonym": st.pseudonym, "example": _path(st.example), "files": st.files,
                      "reason": st.reason, "detail": st.detail, "meaning": MEANINGS.get(st.reason, ""),
                      "since": st.first_at, "last": st.last_at, "attempts": st.attempts})
    for d in sql.held_files(ledger):
        items.append({"kind": "file", "path": _path(d.path), "reason": CONFLICT, "detail": d.detail,
                      "other_path": _path(d.other_path), "meaning": MEANINGS[CONFLICT], "since": d.decided_at})
    if refused:
        for path, reason, when in sql.quarantined_files(ledger):
            items.append({"kind": "refused", "path": _path(path), "reason": reason, "since": when})
    if unreadable:
        for path, reason, when in sql.unreadable_files(ledger):
            items.append({"kind": "unreadable", "path": _path(path), "reason": reason,
                          "detail": UNREADABLE_REASONS.get(reason, ""), "meaning": UNREADABLE_ADVICE, "since": when})
    return {**sql.counts(ledger), "unreadable": sql.unreadable_count(ledger),
            "items": items[:limit] if limit is not None else items}
