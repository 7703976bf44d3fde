"""The report room: records reduced to IDA-RD tables, and every rendering of them.

* `reduce`: the run directory's records -> `Report` (the IDA-RD table and paired
  differences), in bounded memory.
* `model`: `Report` -> `TableModel` s, the one description of a table (rows, order,
  labels, columns, notes, banner, settings, scope) that every surface renders.
* `views`: one table shown as itself (terminal table, plain text, HTML), below the model.
* `tables`: the terminal, Markdown, CSV, Parquet and JSON renderings, and writing them.
* `page`: the self-contained HTML page (tables, charts, ladders).
* `samples`: records recomputed on the worker's path, with their pixels (the one recomputation).
* `grid`: the supplement's Figure 3 for the page, from `samples`.
* `explain`: one record recomputed by hand (``idard-bench explain``).

Which keys a report reduces is the suite room's (`idard.bench.suite.scope`): the run
writes them, the report reads them. Arrows go one way: this room reads the run room (the
worker, to recompute samples), the suite and store rooms and `idard.measure`; only the
command line (`idard.bench.cli`) imports it.
"""

from idard.bench.report.model import (
    PAIRED_TITLE,
    TITLE,
    WILCOXON_MIN_IMAGES,
    TableModel,
    paired_name,
    table_models,
)
from idard.bench.report.tables import DEFAULT_FORMATS, FORMATS, markdown, parse_formats, write_reports
from idard.bench.report.views import rich_table

__all__ = [
    "DEFAULT_FORMATS", "FORMATS", "PAIRED_TITLE", "TITLE", "WILCOXON_MIN_IMAGES", "TableModel", "markdown",
    "paired_name", "parse_formats", "rich_table", "table_models", "write_reports",
]
