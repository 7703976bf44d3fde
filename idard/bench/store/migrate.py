"""Run directories written by idard before ids were path-free (0.1.0).

Those records name weights and precomputed LR folders by absolute path
(``srflow(weights='/home/me/ckpt/x.pth')``, ``precomputed(folder='/data/lr_x4')``), so a
current suite, whose ids say ``weights='x.pth'`` and ``folder='lr_x4',content=...``, does
not find them and would compute everything again. `legacy_ids` finds such ids (the run
prints a one-line notice naming ``idard-bench migrate``) and `migrate` rewrites them to
the current ids, part by part, each part replaced atomically, holding the run directory's
lease like every writer of records. A precomputed folder must
still exist where the old id says (its content hash is part of the new id); ids that
cannot be rewritten are listed and left as they are.
"""

from __future__ import annotations

import re

import polars as pl

from idard.bench.store.lease import holding
from idard.bench.store.records import RecordStore

_ABSOLUTE = re.compile(r"""=\s*['"]?(/|~|[A-Za-z]:[\\/])""")


def legacy_ids(store: RecordStore) -> list[str]:
    """Downscaler and model ids of ``store`` that hold an absolute path (idard 0.1.0)."""
    ids = store.scan().select(pl.concat_list("downscaler", "model").alias("id")).explode("id").unique().collect()
    return sorted(i for i in ids["id"].drop_nulls().to_list() if _ABSOLUTE.search(i))


def legacy_notice(store: RecordStore) -> str | None:
    found = legacy_ids(store)
    if not found:
        return None
    return (f"{store.run_dir} holds records under {len(found)} id(s) written by idard 0.1.0 with absolute paths "
            f"(e.g. {found[0]}); current ids name files by name and content, so those records are not reused: "
            f"run `idard-bench migrate {store.run_dir}` to rewrite their ids")


def _current(old: str) -> str:
    # lazy: loaded on first use, not on import (no cycle: tests/test_imports.py)
    from idard.measure.downscalers import DOWNSCALERS
    from idard.measure.models import MODELS
    from idard.measure.registry import parse_spec

    name = parse_spec(old)[0]
    registry = DOWNSCALERS if name in DOWNSCALERS else MODELS
    return registry.create(old).id


def migrate(store: RecordStore) -> tuple[dict[str, str], dict[str, str]]:
    """Rewrite legacy ids in place, holding the run directory's lease (a run that suggests
    migrate may still be writing there); returns ({old: new} rewritten, {old: why} left as
    is). A path without ``records/`` is `FileNotFoundError`: there is nothing to rewrite,
    and saying so with success would hide a mistyped path."""
    import pyarrow.fs

    if store._fs.get_file_info(store.records_dir).type != pyarrow.fs.FileType.Directory:
        raise FileNotFoundError(f"{store.run_dir}: not a run directory (no records/ folder there)")
    with holding(store, "idard-bench migrate"):
        return _rewrite(store)


def _rewrite(store: RecordStore) -> tuple[dict[str, str], dict[str, str]]:
    mapping, failed = {}, {}
    for old in legacy_ids(store):
        try:
            mapping[old] = _current(old)
        except Exception as exc:  # noqa: BLE001 - reported, the rest is migrated
            failed[old] = f"{type(exc).__name__}: {exc}"
    if not mapping:
        return mapping, failed
    for part in store.parts():
        frame = store.scan([part]).collect()
        hit = frame["downscaler"].is_in(list(mapping)) | frame["model"].is_in(list(mapping))
        if not hit.any():
            continue
        store.replace_part(part, frame.with_columns(pl.col("downscaler").replace(mapping),
                                                    pl.col("model").replace(mapping)))
    return mapping, failed
