"""The HTML report: ONE self-contained file (inline CSS and JS, images as ``data:`` URIs).

A Content-Security-Policy forbids any other origin, so opening it never fetches anything.
Tables sort on a header click (a few lines of vanilla JS). When every image has decoded, a
script sets ``data-images-ok="yes"`` on ``<body>`` (the test suite checks it in headless
Chromium). Per-instance rows are spooled to an anonymous temp file while files stream by,
then copied in, so memory does not grow with the number of files.
"""

from __future__ import annotations

import html
import tempfile
from typing import Any, BinaryIO

from sfr_gateway.audit.collect import ACTIONS, InstanceAudit
from sfr_gateway.audit.report import short
from sfr_gateway.audit.summary import Summary
from sfr_gateway.audit.thumbs import data_uri, encode_png

MAX_DETAIL_ROWS = 20000
MAX_GALLERY = 300

_CSS = """
body{font:13px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:1.5em;color:#1d232a;background:#fafbfc}
h1{font-size:20px;margin:0 0 .3em}h2{font-size:16px;margin:1.6em 0 .4em;border-bottom:1px solid #d5dbe1}
.meta{color:#4a5563}.warn{background:#fde8e8;border:1px solid #e0a0a0;padding:.5em 1em;font-weight:600}
.cards{display:flex;flex-wrap:wrap;gap:.6em;margin:.8em 0}.card{background:#fff;border:1px solid #d5dbe1;
border-radius:6px;padding:.4em .9em}.card b{display:block;font-size:18px}
table{border-collapse:collapse;background:#fff;margin:.3em 0}th,td{border:1px solid #d5dbe1;padding:2px 6px;
vertical-align:top;text-align:left}th{background:#eef1f4;cursor:pointer;user-select:none;white-space:nowrap}
th[data-dir=asc]::after{content:" \\25B2"}th[data-dir=desc]::after{content:" \\25BC"}td.n{text-align:right}
tr:nth-child(even) td{background:#f7f9fb}code{font-size:12px}.removed{color:#a61b1b}.kept{color:#1b5e20}
.pseudonymised,.shifted,.dummy,.cleaned,.emptied{color:#0d47a1}.added{color:#6a1b9a}
img.thumb{image-rendering:pixelated;border:1px solid #999;background:#000;max-width:128px;max-height:128px}td img.thumb{max-width:72px;max-height:72px}
.gallery{display:flex;flex-wrap:wrap;gap:10px}.gallery figure{margin:0;width:150px;font-size:11px;word-break:break-all}
.q{color:#a61b1b;font-weight:600}td.flags{font-size:11px;min-width:18em}
"""

_JS = """
(function(){
  var body=document.body;
  window.addEventListener('error',function(){body.dataset.jsErrors=String(1+(+(body.dataset.jsErrors||0)));});
  function cellKey(tr,i){var td=tr.children[i];if(!td)return '';return td.dataset.sort!==undefined?td.dataset.sort:td.textContent.trim();}
  function num(s){return /^-?[0-9]+(\\.[0-9]+)?$/.test(s)?parseFloat(s):NaN;}
  document.querySelectorAll('table.sortable th').forEach(function(th){
    th.addEventListener('click',function(){
      var table=th.closest('table'),tbody=table.tBodies[0],i=Array.prototype.indexOf.call(th.parentNode.children,th);
      var asc=th.dataset.dir!=='asc';
      th.parentNode.querySelectorAll('th').forEach(function(o){delete o.dataset.dir;});
      th.dataset.dir=asc?'asc':'desc';
      var rows=Array.prototype.slice.call(tbody.rows);
      rows.sort(function(a,b){var x=cellKey(a,i),y=cellKey(b,i),nx=num(x),ny=num(y);
        var c=(!isNaN(nx)&&!isNaN(ny))?nx-ny:x.localeCompare(y);return asc?c:-c;});
      rows.forEach(function(r){tbody.appendChild(r);});
    });
  });
  function check(){
    var imgs=Array.prototype.slice.call(document.images);
    Promise.all(imgs.map(function(im){return (im.complete?Promise.resolve():new Promise(function(r){im.onload=im.onerror=r;}))
      .then(function(){return im.decode?im.decode().catch(function(){}):null;});})).then(function(){
      var ok=imgs.filter(function(im){return im.naturalWidth>0;}).length;
      body.dataset.images=ok+'/'+imgs.length;body.dataset.imagesOk=(ok===imgs.length)?'yes':'no';
    });
  }
  if(document.readyState==='complete')check();else window.addEventListener('load',check);
})();
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _placeholder() -> str:
    import numpy as np

    img = np.full((48, 48), 60, dtype=np.uint8)
    idx = np.arange(48)
    img[idx, idx] = img[idx, 47 - idx] = 200
    return data_uri(encode_png(img))


def _value_cell(v: dict[str, Any] | None) -> str:
    if v is None:
        return '<td data-sort="">—</td>'
    if v["kind"] == "empty":
        return '<td data-sort="(empty)">(empty)</td>'
    text = f'{v["kind"]} · {v["length"]} · <code>{_e(v["fingerprint"] or "")}</code>'
    if v["kind"] == "sequence":
        text = f'sequence · {v["length"]} item(s)'
    if "value" in v:
        shown = v["value"] if isinstance(v["value"], str) else "\\".join(v["value"])
        text += f"<br><b>{_e(shown[:200])}</b>"
    return f'<td data-sort="{_e(v.get("fingerprint") or "")}">{text}</td>'


def _table(cols: list[str], rows: list[str], cls: str = "sortable") -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in cols)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>\n' + "\n".join(rows) + "\n</tbody></table>"


def _img(png: bytes | None, alt: str, placeholder: str) -> str:
    if png is None:
        return f'<img class="thumb placeholder" src="{placeholder}" alt="{_e(alt)}: pixels not decodable" title="pixels not decodable">'
    return f'<img class="thumb" src="{data_uri(png)}" alt="{_e(alt)}">'


class HtmlSink:
    """Writes the self-contained HTML report to a binary file handle."""

    wants_series_thumbnails = True

    def __init__(self, fh: BinaryIO, *, max_rows: int = MAX_DETAIL_ROWS, max_gallery: int = MAX_GALLERY) -> None:
        self.fh = fh
        self.spool = tempfile.TemporaryFile()  # noqa: SIM115 - closed in finish()
        self.rows = 0
        self.max_rows = max_rows
        self.max_gallery = max_gallery
        self.dropped_rows = 0
        self.gallery: list[tuple[InstanceAudit, bytes | None]] = []
        self.gallery_dropped = 0
        self.meta: dict[str, Any] = {}

    def start(self, meta: dict[str, Any]) -> None:
        self.meta = meta

    def add(self, inst: InstanceAudit) -> None:
        if inst.status == "quarantined" or inst.thumbnail is not None or any(f.kind.startswith("burned-in") for f in inst.flags):
            if len(self.gallery) < self.max_gallery:
                thin = InstanceAudit(inst.file, inst.status, inst.patient, inst.study, inst.series,
                                     quarantine=inst.quarantine, flags=list(inst.flags))
                self.gallery.append((thin, inst.thumbnail))
            else:
                self.gallery_dropped += 1
        for a in inst.attributes:
            if self.rows >= self.max_rows:
                self.dropped_rows += 1
                continue
            self.rows += 1
            row = (f"<tr><td>{_e(inst.file)}</td><td>{_e(a.path)}</td><td>{_e(a.tag)}</td><td>{_e(a.vr)}</td>"
                   f"<td>{_e(a.private_creator or '')}</td><td class=\"{_e(a.action)}\">{_e(a.action)}</td>"
                   f"<td>{_e(a.code)}</td><td>{_e(a.rule)}</td>{_value_cell(a.before)}{_value_cell(a.after)}</tr>\n")
            self.spool.write(row.encode("utf-8"))

    def _w(self, text: str) -> None:
        self.fh.write(text.encode("utf-8"))

    def finish(self, summary: Summary, thumbnails: dict[str, bytes | None]) -> None:
        m, t = self.meta, summary.totals()
        ph = _placeholder()
        csp = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"
        self._w(f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
                f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
                f'<meta name="viewport" content="width=device-width,initial-scale=1">'
                f'<title>sfr-gateway audit: {_e(m.get("profile"))}</title><style>{_CSS}</style></head><body>\n')
        self._w(f'<h1>De-identification audit (dry run): profile <code>{_e(m.get("profile"))}</code></h1>'
                f'<p class="meta">Options: {_e(", ".join(m.get("options", [])) or "none")} · PS3.15 {_e(m.get("ps315_edition"))}'
                f' · generated {_e(m.get("generated"))} by {_e(m.get("tool"))} · values <b>{_e(m.get("values"))}</b>'
                f' · fingerprints: {_e(m["fingerprint"]["algorithm"])}, key {_e(m["fingerprint"]["key"])}</p>\n')
        if m.get("values") == "revealed":
            self._w('<p class="warn">This report shows REAL patient values (--reveal). Keep it under the same '
                    'protection as the source images; delete it when done.</p>\n')
        self._w(f'<p class="meta">Selection: {_e(m.get("selection", ""))}</p>\n')
        cards = [("files", t["files"]), ("would be released", t["would_release"]), ("quarantined", t["quarantined"]),
                 ("not released", t["not_released"]),
                 ("patients", t["patients"]), ("studies", t["studies"]), ("series", t["series"]),
                 ("flags", t["flags"]), *((a, t["actions"][a]) for a in ACTIONS)]
        self._w('<div class="cards">' + "".join(f'<div class="card"><b>{v}</b>{_e(k)}</div>' for k, v in cards) + "</div>\n")
        self._studies(summary)
        self._series(summary, thumbnails, ph)
        self._quarantine(summary)
        self._gallery(ph)
        self._flags(summary)
        self._decisions(summary)
        self._detail()
        self._w(f"<script>{_JS}</script>\n</body></html>\n")

    def _studies(self, summary: Summary) -> None:
        rows = [f"<tr><td>{_e(st['patient'] or '(no header)')}</td><td title=\"{_e(st['study'])}\">{_e(short(st['study']))}</td>"
                f'<td class="n">{st["series"]}</td><td class="n">{st["instances"]}</td>'
                f'<td class="n would">{st["released"]}</td><td class="verdict">{_e(st["verdict"])}</td>'
                f'<td class="n{" q" if st["quarantined"] else ""}">{st["quarantined"]}</td>'
                + "".join(f'<td class="n">{st["actions"][a]}</td>' for a in ACTIONS)
                + f"<td class=\"flags\">{_e(', '.join(f'{k} {n}' for k, n in st['flags'].items()))}</td></tr>"
                for st in summary.studies()]
        self._w("<h2>Studies: what a run would release, and why not the rest</h2>\n")
        self._w(_table(["patient", "study", "series", "files", "would release", "verdict", "quarantined", *ACTIONS,
                        "flags"], rows, "sortable studies"))
        why = summary.totals()["not_released_by_reason"]
        if why:
            self._w("<h2>Not released (stage: reason)</h2>\n")
            self._w(_table(["stage: reason", "files"], [f'<tr><td>{_e(k)}</td><td class="n">{n}</td></tr>'
                                                       for k, n in why.items()], "sortable not-released"))

    def _series(self, summary: Summary, thumbnails: dict[str, bytes | None], ph: str) -> None:
        rows = []
        for s in summary.series_list():
            png = thumbnails.get(s.series)
            rows.append(
                f'<tr><td data-sort="{_e(s.series)}">{_img(png, "middle image of series " + short(s.series), ph)}</td>'
                f"<td>{_e(s.patient)}</td><td title=\"{_e(s.study)}\">{_e(short(s.study))}</td>"
                f"<td title=\"{_e(s.series)}\">{_e(short(s.series))}</td><td>{_e(s.modality)}</td>"
                f'<td class="n">{_e(s.series_number)}</td><td class="n">{s.instances}</td>'
                f'<td class="n{" q" if s.quarantined else ""}">{s.quarantined}</td>'
                + "".join(f'<td class="n">{s.actions.get(a, 0)}</td>' for a in ACTIONS)
                + f"<td class=\"flags\">{_e(', '.join(f'{k} {n}' for k, n in sorted(s.flags.items())))}</td></tr>")
        self._w("<h2>Series</h2><p>Middle image of each series (by Instance Number); counts of attribute decisions.</p>\n")
        self._w(_table(["image", "patient", "study", "series", "modality", "no", "files", "quarantined", *ACTIONS, "flags"], rows))

    def _quarantine(self, summary: Summary) -> None:
        self._w(f"<h2>Files that would be quarantined ({len(summary.quarantined)})</h2>\n")
        rows = [f"<tr><td>{_e(q['file'])}</td><td class=\"q\">{_e(q['reason'])}</td><td>{_e(q['detail'])}</td>"
                f"<td>{_e(q['patient'])}</td><td title=\"{_e(q['series'])}\">{_e(short(q['series']))}</td></tr>"
                for q in summary.quarantined]
        self._w(_table(["file", "reason", "detail", "patient", "series"], rows) if rows else "<p>None.</p>")

    def _gallery(self, ph: str) -> None:
        self._w(f"<h2>Images to look at: quarantined or flagged ({len(self.gallery) + self.gallery_dropped})</h2>\n")
        if self.gallery_dropped:
            self._w(f"<p>Only the first {len(self.gallery)} are shown.</p>")
        figs = []
        for inst, png in self.gallery:
            why = inst.quarantine["reason"] + ": " + inst.quarantine["detail"] if inst.quarantine else \
                "; ".join(f"{f.kind}: {f.detail}" for f in inst.flags)
            figs.append(f"<figure>{_img(png, 'image of ' + inst.file, ph)}<figcaption>{_e(inst.file.rsplit('/', 1)[-1])}"
                        f"<br>{_e(why)}</figcaption></figure>")
        self._w('<div class="gallery">' + "".join(figs) + "</div>\n" if figs else "<p>None.</p>\n")

    def _flags(self, summary: Summary) -> None:
        flags = summary.flag_list()
        self._w(f"<h2>Residual-risk flags ({sum(f['instances'] for f in flags)})</h2>\n")
        rows = [f"<tr><td>{_e(f['patient'])}</td><td title=\"{_e(f['series'])}\">{_e(short(f['series']))}</td>"
                f"<td>{_e(f['kind'])}</td><td>{_e(f['path'])}</td><td>{_e(f['detail'])}</td>"
                f'<td class="n">{f["instances"]}</td></tr>' for f in flags]
        self._w(_table(["patient", "series", "kind", "attribute", "detail", "files"], rows) if rows else "<p>None.</p>")

    def _decisions(self, summary: Summary) -> None:
        rows = [f"<tr><td>{_e(d['path'])}</td><td>{_e(d['private_creator'] or '')}</td>"
                f"<td class=\"{_e(d['action'])}\">{_e(d['action'])}</td><td>{_e(d['code'])}</td><td>{_e(d['rule'])}</td>"
                f'<td class="n">{d["instances"]}</td><td class="n">{_e(d["distinct_values"])}</td></tr>'
                for d in summary.decision_list()]
        self._w("<h2>Decisions per attribute (all released files)</h2>\n<p>Distinct values are counted by keyed "
                "fingerprint of the value before de-identification.</p>\n")
        self._w(_table(["attribute", "private creator", "action", "code", "rule", "files", "distinct values"], rows))

    def _detail(self) -> None:
        self._w(f"<h2>Every attribute of every instance ({self.rows + self.dropped_rows} records)</h2>\n")
        if self.dropped_rows:
            self._w(f"<p>The first {self.rows} records are shown; the JSON and CSV reports carry all of them.</p>\n")
        self._w("<details><summary>Show the per-instance records</summary>\n")
        cols = ["file", "attribute", "tag", "VR", "private creator", "action", "code", "rule", "before", "after"]
        self._w('<table class="sortable"><thead><tr>' + "".join(f"<th>{c}</th>" for c in cols) + "</tr></thead><tbody>\n")
        self.spool.seek(0)
        while chunk := self.spool.read(1 << 20):
            self.fh.write(chunk)
        self.spool.close()
        self._w("</tbody></table></details>\n")
