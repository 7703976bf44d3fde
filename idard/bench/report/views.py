"""One table model shown as itself: the terminal table, its plain text, its HTML.

What ``print(table)`` and a notebook show of a `idard.bench.report.model.TableModel`
(its ``__str__`` and ``_repr_html_``), and what `tables` and `page` put in their files.
It sits below the model: it reads a table through the `Table` protocol, so the model can
show itself without importing the renderers that import it.
"""

from __future__ import annotations

import html
import io
from collections.abc import Sequence
from typing import Protocol

from rich.table import Table as RichTable
from rich.text import Text


class Shown(Protocol):
    """A shown column (`idard.bench.report.model.Column`)."""

    header: str
    align: str


class Table(Protocol):
    """What is shown of a `idard.bench.report.model.TableModel`."""

    name: str
    title: str
    banner: str
    scope: str
    notes: tuple[str, ...]
    columns: Sequence[Shown]

    def cells(self) -> list[list[str]]: ...


def rich_table(model: Table) -> RichTable:
    """The terminal's table: banner under the title; scope and notes as the caption."""
    title = Text(model.title)
    if model.banner:
        title.append("\n" + model.banner, style="bold red")
    caption = "\n".join([f"keys: {model.scope}", *model.notes]) if model.scope else "\n".join(model.notes)
    out = RichTable(title=title, title_justify="left", caption=Text(caption) if caption else None, caption_justify="left")
    for column in model.columns:
        out.add_column(column.header, justify="left" if column.align == "left" else "right")
    for cells in model.cells():
        out.add_row(*(Text(c) for c in cells))
    return out


def text(model: Table, width: int = 400) -> str:
    """The terminal table as plain text (what ``print(model)`` shows), never wrapped."""
    from rich.console import Console

    console = Console(file=io.StringIO(), width=width, record=True, color_system=None)
    console.print(rich_table(model))
    return "\n".join(line.rstrip() for line in console.export_text().splitlines())


def table_html(model: Table) -> str:
    """One table of the report as HTML: its title, banner, scope, rows and notes, exactly
    the cells the terminal and Markdown show."""
    anchor = "ida-rd" if model.name == "ida_rd" else "paired"
    left = [column.align == "left" for column in model.columns]
    head = "".join(f"<th{' class=l' if l else ''}>{html.escape(c.header)}</th>" for c, l in zip(model.columns, left))
    rows = "".join("<tr>" + "".join(f"<td{' class=l' if l else ''}>{html.escape(cell)}</td>"
                                    for cell, l in zip(cells, left)) + "</tr>" for cells in model.cells())
    banner = f"<p class=banner>{html.escape(model.banner)}</p>" if model.banner else ""
    scope = f"<p class=note>keys: {html.escape(model.scope)}</p>" if model.scope else ""
    notes = "".join(f"<p class=note>{html.escape(note)}</p>" for note in model.notes)
    return (f"<div class=table id={anchor}-table><p class=title>{html.escape(model.title)}</p>{banner}{scope}"
            f"<table id={anchor}><tr>{head}</tr>{rows}</table>{notes}</div>")
