"""A decoder's validity card (``idard-bench validate-model``) as Markdown and as HTML.

The card is data: ``RUN/card.json``, written by `idard.bench.run.validity`. Everything here
reads that mapping only, so a report renders a card without torch or the model, and the
HTML page shows it with `validity_section` (an empty string for runs without a card).
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping
from typing import Any

_MARK = {"pass": "yes", "fail": "NO", "inconclusive": "?"}
_COLOUR = {"pass": "#1a7f37", "fail": "#cf222e", "inconclusive": "#9a6700",
           "valid": "#1a7f37", "invalid": "#cf222e"}


def _num(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _size_line(card: Mapping[str, Any]) -> str:
    size = card.get("size", {})
    crop = f", centre crops of {size['crop']} px" if size.get("crop") else ""
    sources = size.get("sources")
    sources = ", ".join(sources) if isinstance(sources, list) else sources
    return (f"{size.get('images')} image(s) ({sources}{crop}), K = {size.get('samples')} seeds, "
            f"{size.get('metric')}, x{size.get('scale')}")


def render_markdown(card: Mapping[str, Any]) -> str:
    """``card.md``: the verdict and why, each criterion with its measured items, the table."""
    lines = [f"# Validity card: {card['model']}", "",
             f"**Verdict: {card['verdict']}** — {card['reason']}", "",
             f"Size: {_size_line(card)}. Suite `{card.get('suite')}` (hash {card.get('suite_hash')}), "
             f"code {card.get('code_version')}, weights SHA-256 {card.get('weights_sha256')}.", ""]
    for criterion in card["criteria"]:
        lines += [f"## {criterion['name']}: {criterion['status']}", "", criterion["reason"], "",
                  "| item | measured | holds |", "|---|---|---|"]
        lines += [f"| {_cell(i['label'])} | {_cell(i['detail'])} | {_MARK.get(i['status'], i['status'])} |"
                  for i in criterion["items"]]
        lines.append("")
    lines += ["## IDA-RD per downscaler", "", "| downscaler | IDA-RD | ± (std over images) | non-finite |",
              "|---|---|---|---|"]
    lines += [f"| {row['downscaler']} | {_num(row['ida_rd'])} | {_num(row['std_images'])} | {row['n_nonfinite']} |"
              for row in card.get("table", [])]
    thresholds = ", ".join(f"{k} {v:g}" for k, v in card.get("thresholds", {}).items())
    lines += ["", f"Thresholds: {thresholds}.", ""]
    return "\n".join(lines)


def card_html(card: Mapping[str, Any]) -> str:
    """The card as one HTML fragment (a ``<section id=validity-card>``), styles inline so
    that it reads the same on any page."""
    e = html.escape
    verdict = card["verdict"]
    out = [f"<section id=validity-card><h2>Validity card: {e(card['model'])}</h2>",
           f"<p><b style='color:{_COLOUR.get(verdict, '#000')}'>{e(verdict)}</b> — {e(card['reason'])}</p>",
           f"<p class=note>{e(_size_line(card))}; suite hash {e(str(card.get('suite_hash')))}</p>",
           "<table class=validity><tr><th>criterion</th><th>item</th><th>measured</th><th>holds</th></tr>"]
    for criterion in card["criteria"]:
        items = criterion["items"] or [{"label": "", "detail": criterion["reason"], "status": criterion["status"]}]
        for n, item in enumerate(items):
            head = (f"<td rowspan={len(items)}><b>{e(criterion['name'])}</b><br>"
                    f"<span style='color:{_COLOUR[criterion['status']]}'>{e(criterion['status'])}</span></td>"
                    if n == 0 else "")
            out.append(f"<tr>{head}<td>{e(item['label'])}</td><td>{e(item['detail'])}</td>"
                       f"<td style='color:{_COLOUR[item['status']]}'>{e(_MARK[item['status']])}</td></tr>")
    out.append("</table></section>")
    return "".join(out)


def read_card(run_dir: str) -> dict[str, Any] | None:
    """A run directory's ``card.json``, or None when it has none (or it is unreadable)."""
    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.bench.store.records import RecordStore

    text = RecordStore(run_dir).read_text("card.json")
    try:
        card = json.loads(text) if text else None
    except json.JSONDecodeError:
        return None
    return card if isinstance(card, dict) else None


def validity_section(run_dir: str) -> str:
    """The card's HTML fragment for a report page; empty for a run without a card."""
    card = read_card(run_dir)
    return card_html(card) if card is not None else ""
