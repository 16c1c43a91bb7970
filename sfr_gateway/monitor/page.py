"""The status page: one self-contained HTML file with the site's state (``status --format html``,
refreshed by ``run`` with ``[monitoring] status_page``).

No external resource of any kind (no script, stylesheet, font or image to fetch; a Content
Security Policy in the page forbids them), so it can be mailed, copied to a share or served as
a static file. Every value is escaped. It shows what ``state.collect`` holds: paths,
pseudonyms, reasons and counts, never a patient value.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

from .. import __version__
from ..home.fsutil import atomic_write_text

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"

STYLE = """
:root { --ok: #1b7f3b; --warning: #b26a00; --critical: #b3261e; --muted: #5f6368; --line: #dadce0; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #202124;
       margin: 0 auto; padding: 1.5rem 2rem 3rem; max-width: 1200px; background: #fafafa; }
h1 { font-size: 1.5rem; margin: 0 0 .25rem; }
h2 { font-size: 1.1rem; margin: 1.75rem 0 .5rem; border-bottom: 1px solid var(--line); padding-bottom: .25rem; }
.muted { color: var(--muted); }
.verdict { display: flex; gap: 1rem; align-items: flex-start; margin: 1rem 0; padding: 1rem;
           border-radius: 8px; background: #fff; border: 1px solid var(--line); border-left: 8px solid var(--ok); }
.verdict.WARNING { border-left-color: var(--warning); } .verdict.CRITICAL { border-left-color: var(--critical); }
.badge { font-weight: 700; padding: .15rem .6rem; border-radius: 4px; color: #fff; background: var(--ok); }
.badge.WARNING, .badge.undelivered, .badge.partial, .badge.failing, .badge.waiting { background: var(--warning); }
.badge.CRITICAL, .badge.failed { background: var(--critical); }
.badge.interrupted { background: var(--muted); }
.verdict ul { margin: .25rem 0 0; padding-left: 1.2rem; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: .75rem; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: .6rem .8rem; }
.card b { display: block; font-size: 1.2rem; }
table.kv th { width: 16rem; background: #f8f9fa; }
table { border-collapse: collapse; width: 100%; background: #fff; border: 1px solid var(--line); }
th, td { text-align: left; padding: .3rem .6rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: #f1f3f4; font-weight: 600; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
code, .path { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12.5px; word-break: break-all; }
details { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: .4rem .8rem; margin: .4rem 0; }
summary { cursor: pointer; font-weight: 600; }
footer { margin-top: 2rem; color: var(--muted); font-size: 12px; }
"""


def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Sequence[int] = (), empty: str = "none",
           section: str = "") -> str:
    rows = list(rows)
    if not rows:
        return f'<p class="muted" data-section-empty="{_e(section)}">{_e(empty)}</p>'
    head = "".join(f'<th class="n">{_e(h)}</th>' if i in numeric else f"<th>{_e(h)}</th>" for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f'<td class="n">{cell}</td>' if i in numeric else f"<td>{cell}</td>"
                                    for i, cell in enumerate(row)) + "</tr>" for row in rows)
    return f'<table data-section="{_e(section)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _kv(rows: Iterable[tuple[str, str]], section: str) -> str:
    """A two-column table of names (escaped here) and values (already HTML)."""
    body = "".join(f'<tr><th scope="row">{_e(k)}</th><td>{v}</td></tr>' for k, v in rows)
    return f'<table class="kv" data-section="{_e(section)}"><tbody>{body}</tbody></table>'


def _when(ts: Any) -> str:
    """``2026-12-06T16:53:57+00:00`` as ``2026-12-06 16:53 UTC``."""
    text = str(ts or "")
    return f"{text[:10]} {text[11:16]} UTC" if len(text) >= 16 and text.endswith("+00:00") else text or "never"


def _n(value: Any) -> str:
    return f"{int(value or 0):,}"


def _badge(word: Any) -> str:
    return f'<span class="badge {_e(word)}">{_e(word)}</span>'


def render(data: dict[str, Any]) -> str:
    """The whole page for ``data`` (``state.collect``)."""
    health = data.get("health", {"state": "OK", "problems": [], "notes": []})
    site = data.get("site_id", "?")
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>sfr-gateway {_e(site)}: {_e(health['state'])}</title><style>{STYLE}</style></head>",
        f'<body data-health="{_e(health["state"])}">',
        f"<h1>sfr-gateway — site {_e(site)}</h1>",
        f'<div class="muted">state at {_e(data.get("generated_at"))} · destination <code>{_e(data.get("destination"))}'
        f"</code> · sfr-gateway {_e(__version__)}</div>",
        _verdict(health), _cards(data),
        "<h2 id=\"runs\">Last runs</h2>", _runs(data),
        "<h2 id=\"batches\">Batches by state</h2>", _batches(data),
        "<h2 id=\"destination\">Destination</h2>", _destination(data),
        "<h2 id=\"consent\">Consent coverage</h2>", _consent(data),
        "<h2 id=\"withdrawals\">Withdrawal requests not yet delivered</h2>", _withdrawals(data),
        "<h2 id=\"held-back\">Held back (retried at every run)</h2>", _held(data),
        "<h2 id=\"quarantine\">Quarantine: instances the engine refused, by reason</h2>", _quarantine(data),
        "<h2 id=\"unreadable\">Unreadable files in the exports</h2>", _unreadable(data),
        "<footer>Generated by <code>sfr-gateway status --format html</code>. Paths, pseudonyms, reasons and counts "
        "only: no patient value. Details and what to do: <code>sfr-gateway status</code>, "
        "<code>sfr-gateway quarantine list</code>.</footer>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _verdict(health: dict[str, Any]) -> str:
    items = [f"<li>{_badge(p['level'])} {_e(p['text'])}</li>" for p in health.get("problems", [])]
    items += [f'<li class="muted">{_e(note)}</li>' for note in health.get("notes", [])]
    listing = f"<ul>{''.join(items)}</ul>" if items else '<div class="muted">all well</div>'
    return (f'<div class="verdict {_e(health["state"])}" id="health"><span class="badge {_e(health["state"])}">'
            f"{_e(health['state'])}</span><div>{listing}</div></div>")


def _cards(data: dict[str, Any]) -> str:
    batches = data.get("batches", {})
    held = data.get("held_back", {})
    con = data.get("consent", {})
    cards = [
        ("last successful run", _when(data.get("runs", {}).get("last_success"))),
        ("batches delivered", _n(batches.get("acknowledged", {}).get("batches"))),
        ("waiting for upload", _n(batches.get("packaged", {}).get("batches", 0) + batches.get("failed", {}).get("batches", 0))),
        ("held back", f"{_n(held.get('studies'))} studies, {_n(held.get('files'))} files"),
        ("refused by the engine", _n(held.get("quarantined"))),
        ("consent coverage", f"{con.get('percent', 0)} %"),
        ("withdrawals pending", _n(data.get("withdrawal_requests", {}).get("pending"))),
    ]
    return '<div class="cards">' + "".join(f'<div class="card"><span class="muted">{_e(k)}</span><b>{_e(v)}</b></div>'
                                           for k, v in cards) + "</div>"


def _runs(data: dict[str, Any]) -> str:
    rows = [(_e(_when(r.get("ended_at"))), _badge(r.get("outcome")), _e(r.get("exit_code")), _e(r.get("seconds")),
             _n(r.get("released")), _n(r.get("batches_sent")), _e(r.get("error") or ""))
            for r in data.get("runs", {}).get("last", [])]
    return _table(("ended", "outcome", "exit", "seconds", "released", "batches sent", "error"), rows,
                  numeric=(2, 3, 4, 5), empty="no run recorded yet", section="runs")


def _batches(data: dict[str, Any]) -> str:
    rows = [(_e(state), _n(row["batches"]), _n(row["files"]), _n(row["bytes"]))
            for state, row in sorted(data.get("batches", {}).items())]
    return _table(("state", "batches", "files", "bytes"), rows, numeric=(1, 2, 3), empty="no batch yet",
                  section="batches")


def _destination(data: dict[str, Any]) -> str:
    d = data.get("destination_health", {})
    err = d.get("last_error") or {}
    upload = d.get("last_upload") or {}
    rows = [("URL", f"<code>{_e(d.get('url'))}</code>"), ("state", _badge(d.get("state", "ok"))),
            ("last delivery", _e(_when(d.get("last_delivery")))),
            ("last upload pass", _e(f"{_when(upload.get('at'))} ({upload.get('result')})" if upload else "none")),
            ("batches waiting", _n(d.get("pending_batches"))), ("batches failed", _n(d.get("failed_batches"))),
            ("last error", _e(f"{_when(err.get('at'))} batch {err.get('batch_id')}: {err.get('error')}" if err else "none"))]
    return _kv(rows, "destination")


def _consent(data: dict[str, Any]) -> str:
    con = data.get("consent", {})
    waiting = ", ".join(f"{n} {reason}" for reason, n in sorted(con.get("waiting_studies", {}).items())) or "none"
    nopid = con.get("without_patient_id", {})
    rows = [("summary", _e(con.get("summary"))), ("mode", _e(con.get("mode"))),
            ("studies waiting, by reason", _e(waiting)),
            ("eligible instances without Patient ID", _e(f"{nopid.get('eligible_instances', 0)} ({nopid.get('policy')})"))]
    unresolved = con.get("unresolved_records", {})
    if unresolved:
        rows.append(("records applied to no scanned patient",
                     _e(", ".join(f"{n} {k}" for k, n in unresolved.items()))))
    return _kv(rows, "consent")


def _withdrawals(data: dict[str, Any]) -> str:
    wr = data.get("withdrawal_requests", {})
    rows = [(_e(r["id"]), f"<code>{_e(r['pseudonym'])}</code>", _e(_when(r["created_at"])), _e(r["hours"]), _e(r["attempts"]),
             _e(r.get("last_error") or "")) for r in wr.get("pending_list", [])]
    note = f'<p class="muted">delivered: {_n(wr.get("sent"))} sent, {_n(wr.get("acknowledged"))} acknowledged</p>'
    return _table(("request", "pseudonym", "queued", "hours", "attempts", "last error"), rows,
                  numeric=(3, 4), empty="none pending", section="withdrawals") + note


def _held(data: dict[str, Any]) -> str:
    held = data.get("held_back", {})
    rows = []
    for item in held.get("items", []):
        if item["kind"] == "study":
            what = f"study of <code>{_e(item['pseudonym'])}</code> ({_n(item['files'])} files, e.g. " \
                   f"<span class=\"path\">{_e(item['example'])}</span>)"
        elif item["kind"] == "file":
            what = f"<span class=\"path\">{_e(item['path'])}</span> (same SOP Instance UID as " \
                   f"<span class=\"path\">{_e(item['other_path'])}</span>)"
        else:
            continue
        rows.append((what, _e(item["reason"]), _e(item.get("detail") or item.get("meaning") or ""),
                     _e(_when(item.get("since")))))
    shown = len(rows)
    total = int(held.get("studies", 0)) + int(held.get("files", 0))
    more = f'<p class="muted">… and {total - shown} more: <code>sfr-gateway quarantine list</code></p>' \
        if total > shown else ""
    return _table(("what", "reason", "detail", "since"), rows, empty="nothing held back", section="held-back") + more


def _quarantine(data: dict[str, Any]) -> str:
    quarantine = data.get("quarantine", {})
    if not quarantine:
        return '<p class="muted" data-section-empty="quarantine">none</p>'
    out = []
    for n, (reason, entry) in enumerate(quarantine.items()):
        paths = "".join(f'<li class="path">{_e(p)}</li>' for p in entry["paths"])
        more = f"<li class=\"muted\">… and {entry['count'] - len(entry['paths'])} more</li>" \
            if entry["count"] > len(entry["paths"]) else ""
        opened = " open" if n < 3 else ""
        out.append(f'<details data-reason="{_e(reason)}"{opened}><summary>{_e(reason)}: {_n(entry["count"])}</summary>'
                   f"<ul>{paths}{more}</ul></details>")
    return "".join(out)


def _unreadable(data: dict[str, Any]) -> str:
    counts = data.get("index", {}).get("unreadable", {})
    rows = [(f'<span class="path">{_e(f["path"])}</span>', _e(f["reason"])) for f in data.get("unreadable_files", [])]
    total = sum(counts.values())
    more = f'<p class="muted">… {total - len(rows)} more</p>' if total > len(rows) else ""
    return _table(("path", "reason"), rows, empty="none", section="unreadable") + more


def write(path: Any, text: str) -> None:
    """Replace the page atomically; 0640: readable by a web server put in the service account's
    group (paths can name patients' folders in some exports: not for everyone)."""
    from pathlib import Path


    atomic_write_text(Path(path), text, mode=0o640)
