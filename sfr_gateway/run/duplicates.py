"""Files that share a SOP Instance UID: which one is released, and what becomes of the others.

A SOP Instance UID names one image: the central database keeps one file per UID. Exports break
this two ways: a re-export puts a second copy of the same file elsewhere (harmless: released
once), and a broken UID generator gives one UID to images of different patients (a conflict:
releasing either as "the" instance could attach an image to the wrong patient downstream).

The owner of a shared UID is its first indexed eligible file (the index keeps that order, a
move keeps its place); only the owner is ever released. Every other eligible file with that
UID is compared with the owner once (while neither changes): byte-identical, or the same
dataset in another transfer syntax (``deid.sameness``), is a copy; anything else a conflict,
held back with a reason naming the owner's path and the first attribute that differs (a keyword,
never a value), and kept out of every batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..home.logfile import file_only
from ..ledger import Ledger
from ..ledger import held as sql
from ..ledger.db import utcnow

CONFLICT = "duplicate-uid-conflict"
CONFLICT_VERDICT = "conflict"
BLOCK = 1 << 20


@dataclass
class DuplicateReport:
    """What ``settle`` found (counts; the new conflicts with their paths for the quarantine)."""

    identical: int = 0
    conflicts: int = 0
    new_conflicts: list[sql.Decision] = field(default_factory=list)

    def as_dict(self) -> dict[str, int]:
        return {"identical_copies": self.identical, "conflicts": self.conflicts,
                "new_conflicts": len(self.new_conflicts)}


def same_bytes(a: bytes, b: bytes) -> bool | None:
    """True when the two files hold the same bytes; None when either cannot be read now."""
    try:
        with open(a, "rb") as fa, open(b, "rb") as fb:
            if os.fstat(fa.fileno()).st_size != os.fstat(fb.fileno()).st_size:
                return False
            while True:
                block = fa.read(BLOCK)
                if block != fb.read(BLOCK):
                    return False
                if not block:
                    return True
    except OSError:
        return None


def compare(owner: bytes, other: bytes) -> tuple[bool | None, str]:
    """(one instance?, why): byte-identical files at once; else the engine's comparison
    (``deid.sameness``: the same dataset in another transfer syntax is one instance; a verdict
    it cannot reach counts as a conflict). None when either file cannot be read now."""
    same = same_bytes(owner, other)
    if same is None or same:
        return same, "same bytes"
    from ..deid.sameness import compare_files  # pydicom: only for files that differ

    verdict = compare_files(os.fsdecode(owner), os.fsdecode(other))
    if verdict.same:
        return True, "the same instance in another encoding"
    return False, f"{verdict.verdict}: {verdict.detail}" if verdict.detail else verdict.verdict


def _show(path: bytes) -> str:
    return path.decode("utf-8", "backslashreplace")


def settle(ledger: Ledger, studies: set[str]) -> DuplicateReport:
    """Decide every not yet decided file of ``studies`` (the releasable ones) that shares its
    SOP Instance UID with another eligible file; return the tally."""
    report = DuplicateReport()
    known = sql.decisions(ledger)
    made: list[sql.Decision] = []
    stale: list[bytes] = []
    for group in sql.shared_eligible(ledger):
        owner = group[0]
        for f in group[1:]:
            if f.study_uid not in studies:
                continue  # decided when its study can be released
            d = known.get(f.path)
            if d is not None and (d.size, d.mtime_ns, d.other_path) == (f.size, f.mtime_ns, owner.path):
                report.identical += d.verdict == "identical"
                report.conflicts += d.verdict == CONFLICT_VERDICT
                continue
            if d is not None:
                stale.append(f.path)
            same, why = compare(owner.path, f.path)
            if same is None:
                continue  # one of them unreadable now: the next run decides
            detail = (f"{why} as {_show(owner.path)}" if same else
                      f"its SOP Instance UID is also that of {_show(owner.path)}, with other content ({why}); "
                      "that file, indexed first, is the one released for this UID")
            decision = sql.Decision(f.path, f.size, f.mtime_ns, f.sop_instance_uid, f.study_uid, owner.path,
                                    "identical" if same else CONFLICT_VERDICT, detail, utcnow())
            made.append(decision)
            if same:
                report.identical += 1
            else:
                report.conflicts += 1
                report.new_conflicts.append(decision)
                file_only.warning("held back %s: %s", _show(f.path), detail)
    if made or stale:
        sql.record_decisions(ledger, made, stale)
    return report



def quarantine_records(quarantine: Path, profile: str, decisions: list[sql.Decision], keep_copies: bool) -> None:
    """A record in HOME/quarantine for each newly held-back file, as for refused files."""
    from ..deid import folder

    spec = folder.RunSpec(profile=profile, options=(), site_overrides=(), site_private_keep=(), output=quarantine,
                   quarantine=quarantine, keep_copies=keep_copies, secret=b"", site_id="")
    for d in decisions:
        folder.quarantine(spec, Path(os.fsdecode(d.path)), CONFLICT, d.detail, other=_show(d.other_path))
