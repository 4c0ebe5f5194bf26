"""HTML building blocks and the page shell: one file, inline CSS, images as data URIs.

An inline script marks, once the page has loaded, how many images loaded and how many are
broken (``data-images-loaded`` / ``data-images-broken`` on ``<body>``), so a headless browser
can check the page without a server.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.contract import Section

esc = html.escape

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1200px; padding: 1em 2em;
       color: #1d2330; background: #fbfbfd; }
h1 { margin-bottom: 0.1em; } h2 { border-bottom: 2px solid #3b6ea8; padding-bottom: 0.2em; margin-top: 2em; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; margin: 0.6em 0 1em; font-size: 13px; }
th, td { border: 1px solid #d5d9e0; padding: 0.25em 0.6em; text-align: right; vertical-align: top; }
th { background: #eef1f6; } td.text, th.text { text-align: left; }
.not-run { color: #8a5a00; background: #fff6e0; border-left: 4px solid #e0a800; padding: 0.5em 1em; }
.note { color: #555; font-size: 12px; } .bad { color: #b0413e; font-weight: bold; }
img { max-width: 100%; } img.broken { outline: 3px solid red; }
figure { margin: 0.6em 0 1.2em; } figcaption { font-size: 12px; color: #555; }
pre { background: #f2f4f8; padding: 0.6em; overflow-x: auto; font-size: 12px; }
.timeline { margin: 0.8em 0 1.6em; }
.timeline img { width: 100%; display: block; image-rendering: pixelated; }
.chunks { display: grid; grid-template-columns: repeat(1000, 1fr); gap: 2px 0; margin-top: 2px; }
.chunk { background: #eef1f6; border-left: 2px solid #3b6ea8; padding: 0.2em 0.4em; font-size: 12px;
         overflow-wrap: anywhere; }
.chunk b { display: block; color: #3b6ea8; font-weight: 600; }
"""

IMAGE_CHECK = """
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(function (i) { return !i.complete || i.naturalWidth === 0; });
  broken.forEach(function (i) { i.classList.add("broken"); });
  document.body.setAttribute("data-images-total", images.length);
  document.body.setAttribute("data-images-loaded", images.length - broken.length);
  document.body.setAttribute("data-images-broken", broken.length);
});
"""


def not_run(slug: str, title: str, why: str) -> Section:
    return Section(slug, title, f'<p class="not-run">not run: {esc(why)}</p>', ran=False)


def table(
    headers: Sequence[str], rows: Iterable[Sequence[Any]], text_columns: Sequence[int] = (0,)
) -> str:
    """A table; cells are escaped unless wrapped in :class:`Raw`; numbers right-aligned."""

    def cell(tag: str, value: Any, index: int) -> str:
        css = ' class="text"' if index in text_columns else ""
        content = value.html if isinstance(value, Raw) else esc(format_value(value))
        return f"<{tag}{css}>{content}</{tag}>"

    head = "".join(cell("th", h, i) for i, h in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(cell("td", v, i) for i, v in enumerate(r)) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


@dataclass(frozen=True)
class Raw:
    """Already-safe HTML for a table cell."""

    html: str


def format_value(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def percent(share: float) -> str:
    return f"{100 * share:.1f}%"


def figure(uri: str, caption: str, image_id: str) -> str:
    return (
        f'<figure><img id="{esc(image_id)}" src="{uri}" alt="{esc(caption)}">'
        f"<figcaption>{esc(caption)}</figcaption></figure>"
    )


def pretty_json(value: Any, summary: str) -> str:
    text = json.dumps(value, indent=1, sort_keys=True, ensure_ascii=False, default=str)
    return f"<details><summary>{esc(summary)}</summary><pre>{esc(text)}</pre></details>"


def human_bytes(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return ""


def page(title: str, subtitle: str, sections: Sequence[Section]) -> str:
    nav = " ".join(f'<a href="#{s.slug}">{esc(s.title)}</a>' for s in sections)
    body = "\n".join(
        f'<section id="{s.slug}" data-ran="{str(s.ran).lower()}"><h2>{esc(s.title)}</h2>\n{s.body}\n</section>'
        for s in sections
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{STYLE}</style><script>{IMAGE_CHECK}</script></head>\n"
        f'<body><h1>{esc(title)}</h1><p class="note">{esc(subtitle)}</p><nav>{nav}</nav>\n{body}\n</body></html>\n'
    )
