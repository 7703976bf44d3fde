"""The report room: records reduced to IDA-RD tables, and every rendering of them.

* `reduce`: the run directory's records -> `Report` (the IDA-RD table and paired
  differences), in bounded memory.
* `tables`: the terminal, Markdown, CSV, Parquet and JSON renderings, and writing them.
* `page`: the self-contained HTML page (tables, charts, ladders).
* `samples`: records recomputed on the worker's path, with their pixels (the one recomputation).
* `grid`: the supplement's Figure 3 for the page, from `samples`.
* `explain`: one record recomputed by hand (``idard-bench explain``).

Arrows go one way: this room reads the store (`idard.bench.store`) and the measure
(`idard.measure`); nothing below it imports it. ``from idard.bench.report import
markdown, write_reports`` keeps working as before the room existed.
"""

from idard.bench.report.tables import (
    DEFAULT_FORMATS,
    FORMATS,
    PAIRED_TITLE,
    TITLE,
    WILCOXON_MIN_IMAGES,
    markdown,
    paired_markdown,
    paired_name,
    parse_formats,
    rich_paired_table,
    rich_table,
    small_sample_note,
    write_reports,
)

__all__ = [
    "DEFAULT_FORMATS", "FORMATS", "PAIRED_TITLE", "TITLE", "WILCOXON_MIN_IMAGES", "markdown", "paired_markdown",
    "paired_name", "parse_formats", "rich_paired_table", "rich_table", "small_sample_note", "write_reports",
]
