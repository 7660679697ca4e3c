"""Self-contained HTML pages: PNGs embedded as base64, inline CSS/JS, no network.

A Content-Security-Policy in every page forbids loading anything but
``data:`` images, so a page that renders here renders offline anywhere.
"""
from __future__ import annotations

import base64
import datetime as _dt
import json
import math
import os
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path

from .. import __version__
from ..atomic import readable_path, write_text
from ..errors import OutputError

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;margin:1.2em 2em;
color:#1c1c1c;background:#fafafa}
h1{font-size:1.5em;margin:.2em 0} h2{font-size:1.15em;margin:1.4em 0 .4em;border-bottom:1px solid #ccc}
.meta{color:#666;font-size:.85em} p.warn{background:#fff4e5;border-left:4px solid #d55e00;padding:4px 8px}
table{border-collapse:collapse;font-size:.85em;background:#fff}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#eef1f5} td.num{text-align:right;font-variant-numeric:tabular-nums}
table.sortable th{cursor:pointer;user-select:none} table.sortable th:after{content:' \\2195';color:#aaa}
table.summary th{width:16em;font-weight:600} table.summary td{max-width:46em}
.figs img{max-width:100%;height:auto;display:block;margin:.3em 0 1em;border:1px solid #ccc}
.gallery{display:flex;flex-wrap:wrap;gap:8px}
.gallery figure{margin:0;background:#fff;border:1px solid #ccc;padding:3px}
.gallery figure:target{outline:3px solid #d55e00} .gallery img{display:block}
.legend span.sw{display:inline-block;width:.9em;height:.9em;border:3px solid;margin:0 .3em 0 1em;vertical-align:-2px}
.verdict{font-weight:700} .fail{color:#b00020}
.keyfig{display:flex;flex-wrap:wrap;gap:10px;margin:.6em 0}
.keyfig div{background:#fff;border:1px solid #ccc;padding:6px 12px;min-width:9em}
.keyfig b{display:block;font-size:1.5em} .keyfig span{font-size:.8em;color:#555}
figcaption{font-size:.8em;color:#333}
"""

SORT_JS = """
document.querySelectorAll('table.sortable').forEach(function(t){
  t.querySelectorAll('th').forEach(function(th,i){th.addEventListener('click',function(){
    var b=t.tBodies[0],rows=Array.from(b.rows),asc=th.dataset.dir!=='asc';
    t.querySelectorAll('th').forEach(function(h){delete h.dataset.dir});th.dataset.dir=asc?'asc':'desc';
    function key(r){var c=r.cells[i],v=c.dataset.sort!==undefined?c.dataset.sort:c.textContent.trim();
      var n=parseFloat(v);return (v!==''&&!isNaN(n)&&isFinite(v))?n:v.toLowerCase();}
    rows.sort(function(a,c){var x=key(a),y=key(c);
      if(typeof x!==typeof y){x=String(x);y=String(y);} return (x<y?-1:x>y?1:0)*(asc?1:-1);});
    rows.forEach(function(r){b.appendChild(r)});});});});
"""

NICE = {
    "lesion_count": "Lesion count", "total_volume_ml": "Total lesion volume (mL)", "regions": "Regions",
    "mcdonald_dis": "McDonald 2017 dissemination in space", "model": "Model", "inputs": "Inputs",
    "volume_ml": "volume (mL)", "voxel_size_mm": "voxel size (mm)", "mslesion_version": "mslesion version",
}


def image_data_uri(path: Path) -> str:
    """base64 data URI of a PNG (read where it is now: a page written inside an
    :func:`mslesion.atomic.output_group` embeds the group's pictures before they are renamed into place)."""
    try:
        data = readable_path(path).read_bytes()
    except OSError as exc:
        raise OutputError(path, f"QC image cannot be read ({exc.strerror or exc})") from exc
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise OutputError(path, "QC image is not a PNG file")
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def fmt(value: object) -> str:
    """Text shown for a value: floats to 4 significant digits, None as a dash, a mapping as "key value, ..."."""
    if value is None:
        return "\u2014"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return " \u00d7 ".join(fmt(v) for v in value) if all(isinstance(v, (int, float)) for v in value) else ", ".join(
            fmt(v) for v in value)
    if isinstance(value, Mapping):
        return ", ".join(f"{str(k).replace('_', ' ')} {fmt(v)}" for k, v in value.items())
    return str(value)


def _is_num(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def summary_rows(summary: dict, prefix: str = "", depth: int = 0) -> str:
    """Key/value rows; every leaf carries data-key (dotted path) and data-value (JSON)."""
    out = []
    for key, value in summary.items():
        path = f"{prefix}{key}"
        label = NICE.get(str(key), str(key).replace("_", " "))
        pad = f' style="padding-left:{0.5 + 1.2 * depth}em"'
        if isinstance(value, dict) and value:
            out.append(f"<tr><th{pad} colspan=2>{escape(label)}</th></tr>")
            out.append(summary_rows(value, path + ".", depth + 1))
        else:
            cls = ' class="num"' if _is_num(value) else ""
            dv = escape(json.dumps(value, default=str), quote=True)
            out.append(f'<tr><th{pad}>{escape(label)}</th><td{cls} data-key="{escape(path, quote=True)}" '
                       f'data-value="{dv}">{escape(fmt(value))}</td></tr>')
    return "\n".join(out)


def value_cell(value: object, key: str | None = None) -> str:
    """A table cell showing ``value``; with ``key`` (dotted report key) it carries data-key / data-value."""
    cls = ' class="num"' if _is_num(value) else ""
    attrs = ""
    if key is not None:
        dv = escape(json.dumps(value, default=str), quote=True)
        attrs = f' data-key="{escape(key, quote=True)}" data-value="{dv}"'
    return f"<td{cls}{attrs}>{escape(fmt(value))}</td>"


def facts_table(rows: Sequence[tuple[str, str | None, object]], table_id: str) -> str:
    """Readable two-column table of (label, dotted report key or None, value) rows."""
    body = "".join(f"<tr><th>{escape(label)}</th>{value_cell(value, key)}</tr>" for label, key, value in rows)
    return f'<table class="summary" id="{escape(table_id, quote=True)}">{body}</table>'


def grid_table(columns: list[str], rows: Sequence[Sequence[tuple[str | None, object]]], table_id: str) -> str:
    """Table with a header row; each cell is (dotted report key or None, value)."""
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(value_cell(v, k) for k, v in r) + "</tr>" for r in rows)
    return (f'<table id="{escape(table_id, quote=True)}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table>")


def table_html(rows: list[dict], table_id: str = "lesions", links: dict[str, str] | None = None) -> str:
    """A sortable table; ``links`` maps a column to an href template such as '#lesion-{id}'."""
    if not rows:
        return "<p>None.</p>"
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    head = "".join(f"<th>{escape(str(c))}</th>" for c in cols)
    body = []
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c, "")
            cls = ' class="num"' if _is_num(v) else ""
            txt = escape(fmt(v) if v != "" else "")
            if links and c in links and v != "":
                txt = f'<a href="{escape(links[c].format(**r), quote=True)}">{txt}</a>'
            sort = f' data-sort="{v}"' if _is_num(v) else ""
            cells.append(f"<td{cls}{sort}>{txt}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<table class="sortable" id="{table_id}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>")


def legend_html(legend: list[tuple[str, str]], note: str = "") -> str:
    items = "".join(f'<span class="sw" style="border-color:{escape(c)}"></span>{escape(n.replace("_", " "))}'
                    for n, c in legend)
    return f'<p class="legend">Lesion outline colours:{items}</p><p class="meta">{escape(note)}</p>' if legend else ""


def page(title: str, body: str) -> str:
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body>\n"
            f"<h1>{escape(title)}</h1><p class=\"meta\">mslesion {escape(__version__)} \u00b7 {stamp}</p>\n"
            f"{body}\n<script>{SORT_JS}</script></body></html>\n")


def write_report_html(out_dir: Path, title: str, summary: dict | None, table_rows: list[dict],
                      images: list[tuple[str, Path]], *, filename: str = "report.html",
                      legend: list[tuple[str, str]] | None = None, note: str = "",
                      gallery: list[tuple[str, Path, str]] | None = None,
                      table_links: dict[str, str] | None = None, key_figures: dict | None = None,
                      sections: list[tuple[str, str]] | None = None, table_title: str = "Table") -> Path:
    """Write ``out_dir/filename``: summary, sections, figures (embedded PNGs), table and optional gallery.

    ``summary`` (None: none) is shown as nested key/value rows; ``sections`` are (heading, HTML)
    pairs shown after it (readable tables built with :func:`facts_table` / :func:`grid_table`);
    ``images`` are (caption, PNG path) pairs, normally under ``out_dir/qc``;
    ``gallery`` items are (caption, PNG path, anchor id); ``key_figures`` maps a
    dotted summary key to (label, value) and is shown large at the top.
    """
    out_dir = Path(out_dir)
    parts = []
    if key_figures:
        boxes = "".join(f'<div><b data-key="{escape(k, quote=True)}" '
                        f'data-value="{escape(json.dumps(v, default=str), quote=True)}">'
                        f"{escape(fmt(v))}</b><span>{escape(label)}</span></div>"
                        for k, (label, v) in key_figures.items())
        parts.append(f'<div class="keyfig">{boxes}</div>')
    if summary is not None:
        parts += ["<h2>Summary</h2>", f'<table class="summary" id="summary">{summary_rows(summary)}</table>']
    for heading, html in sections or []:
        parts += [f"<h2>{escape(heading)}</h2>", html]
    if legend or note:
        parts.append(legend_html(legend or [], note))
    if images:
        parts.append('<h2>Images</h2><div class="figs">')
        for cap, p in images:
            parts.append(f'<figure><figcaption>{escape(cap)}</figcaption>'
                         f'<img src="{image_data_uri(p)}" alt="{escape(cap, quote=True)}"></figure>')
        parts.append("</div>")
    parts.append(f"<h2>{escape(table_title)} ({len(table_rows)} rows)</h2>")
    parts.append(table_html(table_rows, links=table_links))
    if gallery:
        parts.append(f'<h2>Lesion gallery ({len(gallery)})</h2><div class="gallery">')
        for cap, p, anchor in gallery:
            parts.append(f'<figure id="{escape(anchor, quote=True)}"><img src="{image_data_uri(p)}" '
                         f'alt="{escape(cap, quote=True)}"><figcaption>{escape(cap)}</figcaption></figure>')
        parts.append("</div>")
    return write_text(out_dir / filename, page(title, "\n".join(parts)))


RESERVED = ("subject", "out_dir", "report", "report_html", "thumbnail")


def write_batch_index(deriv: Path, rows: list[dict], failures: list[dict], title: str | None = None) -> Path:
    """Write ``deriv/index.html``: one sortable row per subject, thumbnails embedded, failures listed.

    Each row: ``subject``; where its page is: ``report_html``, ``report`` (the page, or
    its report JSON: a ``*report.html`` is then looked up in the subject folder) or
    ``out_dir`` (the analysis folder), absolute or relative to ``deriv``; optional
    ``thumbnail`` PNG (default ``qc/*thumbnail.png`` beside the page); any other keys
    are shown as columns (nested dicts one level deep as ``key.sub``).  Each failure: ``subject``, ``error``,
    anything else.
    """
    deriv = Path(deriv)
    cols: list[str] = []
    flat_rows = []
    for r in rows:
        flat = _flatten({k: v for k, v in r.items() if k not in RESERVED})
        cols += [k for k in flat if k not in cols]
        flat_rows.append(flat)
    head = "<th>subject</th><th>thumbnail</th>" + "".join(f"<th>{escape(c)}</th>" for c in cols) + "<th>report</th>"
    body = []
    for r, flat in zip(rows, flat_rows):
        subj = str(r.get("subject", ""))
        report = _report_path(deriv, r)
        href = os.path.relpath(report, deriv) if report is not None else None
        thumb = _thumbnail(deriv, r, report)
        img = (f'<img src="{image_data_uri(thumb)}" alt="{escape(subj, quote=True)}" height="96">'
               if thumb is not None and thumb.is_file() else "\u2014")
        if href is not None and report is not None and report.is_file() and img != "\u2014":
            img = f'<a href="{escape(Path(href).as_posix(), quote=True)}">{img}</a>'

        cells = [f'<td data-key="subject">{escape(subj)}</td>', f"<td>{img}</td>"]
        for c in cols:
            v = flat.get(c, "")
            cls = ' class="num"' if _is_num(v) else ""
            sort = f' data-sort="{v}"' if _is_num(v) else ""
            cells.append(f"<td{cls}{sort}>{escape(fmt(v) if v != '' else '')}</td>")
        link = (f'<a href="{escape(Path(href).as_posix(), quote=True)}">report</a>'
                if href is not None and report is not None and report.is_file() else "\u2014")
        cells.append(f"<td>{link}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    parts = [f"<p>{len(rows)} subject(s) analysed, {len(failures)} failed.</p>",
             "<h2>Subjects</h2>",
             f'<table class="sortable" id="subjects"><thead><tr>{head}</tr></thead>'
             f'<tbody>{"".join(body)}</tbody></table>']
    parts.append(f'<h2 class="{"fail" if failures else ""}">Failures ({len(failures)})</h2>')
    parts.append(table_html([{k: (v if isinstance(v, (int, float, str)) else fmt(v)) for k, v in f.items()}
                             for f in failures], table_id="failures"))
    return write_text(deriv / "index.html", page(f"mslesion batch: {title or deriv.name}", "\n".join(parts)))


def _report_path(deriv: Path, row: dict) -> Path | None:
    """The subject's report.html: ``report_html``, ``report`` (.html, or a report JSON whose
    subject folder holds a ``*report.html``, as in the batch's BIDS layout) or ``out_dir``/report.html."""
    if row.get("report_html"):
        p = Path(row["report_html"])
    elif row.get("report"):
        p = Path(row["report"])
        p = p if p.is_absolute() else deriv / p
        if p.suffix != ".html":
            found = sorted(p.parent.glob("*report.html")) or sorted(p.parent.parent.glob("*/*report.html"))
            p = found[0] if found else p.with_suffix(".html")
    elif row.get("out_dir"):
        p = Path(row["out_dir"]) / "report.html"
    else:
        return None
    return p if p.is_absolute() else deriv / p


def _thumbnail(deriv: Path, row: dict, report: Path | None) -> Path | None:
    if row.get("thumbnail"):
        p = Path(row["thumbnail"])
        return p if p.is_absolute() else deriv / p
    if report is None:
        return None
    found = sorted((report.parent / "qc").glob("*thumbnail.png"))
    return found[0] if found else None


def _flatten(d: dict) -> dict:
    out: dict = {}
    for k, v in d.items():
        if isinstance(v, dict):
            for k2, v2 in v.items():
                out[f"{k}.{k2}"] = v2 if isinstance(v2, (int, float, str, bool)) or v2 is None else fmt(v2)
        else:
            out[k] = v if isinstance(v, (int, float, str, bool)) or v is None else fmt(v)
    return out
