"""The site's state in one dictionary: what ``status`` prints (and ``--json``), what the status
page shows, what the metrics count and what ``status --check`` judges.

Everything comes from the ledger and config, read in one snapshot; nothing contacts the
destination (the destination's health is what the last deliveries recorded). Paths, pseudonyms,
reasons and counts only: no patient value (no Patient ID, no name).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

from ..consent import registry as consent
from ..home.config import Config
from ..home.lock import holder
from ..ledger import Ledger, instances, open_ledger
from ..ledger import batches as sql
from ..ledger import held as held_sql
from ..ledger.runs import last_upload
from ..run.held import held_back
from ..transport.base import redact_url
from . import runs
from .health import judge
from .settings import MonitoringSettings

STATUS_LIMIT = 20  # held-back items `status` names; `quarantine list` names them all
PATHS_PER_REASON = 50  # quarantined and unreadable paths shown per reason (the page, --json)


def _path(raw: bytes | None) -> str:
    return raw.decode("utf-8", "backslashreplace") if raw is not None else "(no longer indexed)"


def collect(config: Config, *, now: dt.datetime | None = None, today: dt.date | None = None,
            coverage: dict[str, Any] | None = None, items: int | None = STATUS_LIMIT) -> dict[str, Any]:
    """The state of the site. ``today``: the day consent is judged on (default: now's local
    date); ``coverage``: consent coverage already computed (``run`` has it: the metrics written
    after a run do not compute it twice); ``items``: held-back items named.

    Keys: site_id, generated_at, destination (redacted URL), index, consent, batches (by
    state), last_success (last delivery), last_error, instances, withdrawal_requests,
    held_back, packaging (batches left in ``packaging``, and why), quarantine (by reason, with
    paths), unreadable_files, runs (last ten, last_success, set_up_at), destination_health,
    health (state, code, line, problems)."""

    now = now or dt.datetime.now(dt.UTC)
    today = today or now.astimezone().date()
    settings = MonitoringSettings.from_raw(config.raw)
    with open_ledger(config.home.state_db) as ledger, ledger.snapshot():
        counts = sql.status_counts(ledger)
        data: dict[str, Any] = {
            "site_id": config.site_id,
            "generated_at": now.isoformat(timespec="seconds"),
            "destination": redact_url(config.effective_destination),
            "index": instances.summary(ledger),
            "consent": coverage if coverage is not None else consent.coverage(ledger, config.consent, today),
            **counts,
            "withdrawal_requests": _withdrawals(ledger, now),
            "held_back": held_back(ledger, limit=items),
            "packaging": _packaging(ledger, config),
            "quarantine": _quarantine(ledger),
            "unreadable_files": [{"path": _path(p), "reason": r}
                                 for p, r in instances.unreadable_files(ledger, limit=PATHS_PER_REASON)],
            "runs": {"last": runs.history(ledger, 10), "last_success": runs.last_success(ledger),
                     "set_up_at": runs.set_up_at(ledger)},
        }
        data["destination_health"] = _destination(ledger, data, counts)
    data["health"] = judge(data, settings, now).as_dict()
    return data


def _withdrawals(ledger: Ledger, now: dt.datetime) -> dict[str, Any]:
    """Requests by state; the pending ones (oldest first) with their age and last error."""

    pending = consent.withdrawal_requests(ledger, "pending")
    out: dict[str, Any] = {state: len(consent.withdrawal_requests(ledger, state)) for state in ("sent", "acknowledged")}
    out["pending"] = len(pending)
    out["pending_list"] = [{"id": r.id, "pseudonym": r.pseudonym, "created_at": r.created_at, "attempts": r.attempts,
                            "hours": round(runs.hours_since(r.created_at, now) or 0.0, 1), "last_error": r.last_error}
                           for r in pending[:STATUS_LIMIT]]
    out["oldest_pending_hours"] = out["pending_list"][0]["hours"] if pending else None
    return out


def _packaging(ledger: Ledger, config: Config) -> dict[str, Any]:
    """Batches in ``packaging``, and why: a run packaging them now, or one that was interrupted
    (Ctrl-C, killed, power cut) before their files were finished: nothing of them was sent, and
    the next run removes them and packages their studies again."""

    n = len(sql.batches(ledger, ["packaging"]))
    pid = holder(config.home.lock)
    them = "it" if n == 1 else "them"
    if not n:
        explanation = ""
    elif pid is not None:
        explanation = f"a run (pid {pid}) is packaging {them} now"
    else:
        explanation = (f"left by a run that was interrupted (Ctrl-C, killed or a power cut) while packaging "
                       f"{them}: nothing of {them} was sent; the next run removes what was written and "
                       "packages the study again")
    return {"batches": n, "run_in_progress": pid, "explanation": explanation}


def _quarantine(ledger: Ledger) -> dict[str, Any]:
    """Instances the engine refused, by reason, with the paths (``PATHS_PER_REASON`` each)."""

    by_reason: dict[str, dict[str, Any]] = defaultdict(lambda: {"count": 0, "paths": []})
    for path, reason, _ in held_sql.quarantined_files(ledger):
        entry = by_reason[reason or "unknown"]
        entry["count"] += 1
        if len(entry["paths"]) < PATHS_PER_REASON:
            entry["paths"].append(_path(path))
    return dict(sorted(by_reason.items()))


def _destination(ledger: Ledger, data: dict[str, Any], counts: dict[str, Any]) -> dict[str, Any]:
    """What the last deliveries say about the destination (nothing is sent to find out:
    ``destination check`` does that)."""
    batches = counts["batches"]
    failed = batches.get("failed", {}).get("batches", 0)
    pending = batches.get("packaged", {}).get("batches", 0) + failed

    state = "failing" if failed else ("waiting" if pending else "ok")
    return {"url": data["destination"], "state": state, "pending_batches": pending, "failed_batches": failed,
            "last_delivery": counts["last_success"], "last_error": counts["last_error"] if failed else None,
            "last_upload": last_upload(ledger)}
