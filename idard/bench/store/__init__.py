"""The store room: a run directory's bytes, and the only code that touches them.

* `records`: `RecordStore`, the immutable Parquet parts of one run directory (schema,
  crash-safe writes, damaged parts set aside).
* `visibility`: which parts a reader reads (compaction manifests and lease fences).
* `compact`: many small parts rewritten as few large ones, safe to kill at any point.
* `lease`: one writer per run directory (`RunLease`).
* `migrate`: records of an older idard rewritten to today's ids.

Arrows go one way: this room imports `idard.measure` and nothing else of `idard.bench`;
what it needs from above (a lease to check before each write) it is given.
"""

from idard.bench.store.records import (
    PART_GLOB,
    STORE_SCHEMA,
    RecordStore,
    StoreWriteError,
    is_uri,
    skipped_part_notes,
    without_duplicates,
)

__all__ = ["PART_GLOB", "STORE_SCHEMA", "RecordStore", "StoreWriteError", "is_uri", "skipped_part_notes",
           "without_duplicates"]
