"""The report room: records reduced to IDA-RD tables, and every rendering of them.

* `reduce`: the run directory's records -> `Report` (the IDA-RD table and paired
  differences), in bounded memory.
* `scope`: which keys a report reduces (the run's suite's, by default) and whose folder
  it may write into.
* `model`: `Report` -> `TableModel` s, the one description of a table (rows, order,
  labels, columns, notes, banner, settings, scope) that every surface renders.
* `tables`: the terminal, Markdown, CSV, Parquet and JSON renderings, and writing them.
* `page`: the self-contained HTML page (tables, charts, ladders).
* `samples`: records recomputed on the worker's path, with their pixels (the one recomputation).
* `grid`: the supplement's Figure 3 for the page, from `samples`.
* `explain`: one record recomputed by hand (``idard-bench explain``).

Arrows go one way: this room reads the store (`idard.bench.store`) and the measure
(`idard.measure`); nothing below it imports it.
"""

from idard.bench.report.model import (
    PAIRED_TITLE,
    TITLE,
    WILCOXON_MIN_IMAGES,
    TableModel,
    table_models,
)
from idard.bench.report.tables import (
    DEFAULT_FORMATS,
    FORMATS,
    markdown,
    paired_name,
    parse_formats,
    rich_table,
    write_reports,
)

__all__ = [
    "DEFAULT_FORMATS", "FORMATS", "PAIRED_TITLE", "TITLE", "WILCOXON_MIN_IMAGES", "TableModel", "markdown",
    "paired_name", "parse_formats", "rich_table", "table_models", "write_reports",
]
