"""Which records a report reduces, and whose folder it writes into.

A run directory accumulates records: a deleted image keeps its error records, a suite that
once drew more samples keeps its extra seeds. ``idard-bench run`` reduces the keys of the
suite it just ran, so ``idard-bench report`` must reduce the same keys by default, or the
two commands print different tables for one run directory. The run records those keys
(`SuiteKeys`, ``RUN/suite_keys.json``: the suite expanded over the images it listed), and
a report reads them back without loading the suite: no registry, no torch, no image
source to list. Every table says which keys it reduced (`Scope.describe`).

The same module knows whose folder a run directory is: ``--out`` may be the suite's own
folder, whose ``suite.yaml`` (and ``ida_rd.md``...) are the user's. A ``suite.yaml``
without idard's header marks such a folder (`idard_made`), and nothing but records and
idard's own bookkeeping is written there.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence

import polars as pl

from idard.bench.store.records import RecordStore

#: The run directory's copy of its suite, loadable with ``--suite`` (it names absolute paths).
SUITE_COPY = "suite.yaml"
SUITE_COPY_HEADER = "# written by idard-bench run: the suite of this run directory (loadable with --suite)\n"
#: The keys of the suite a run directory was last run with (`SuiteKeys`).
SUITE_KEYS = "suite_keys.json"


@dataclasses.dataclass(frozen=True)
class SuiteKeys:
    """The record keys of a suite, expanded over the images its sources listed."""

    suite: str
    suite_hash: str
    images: tuple[str, ...]
    downscalers: tuple[str, ...]
    models: tuple[str, ...]
    metrics: tuple[str, ...]
    seeds: tuple[int, ...]
    #: An adaptive suite's seeds are its most (``samples.max``): each group draws a prefix.
    adaptive: bool = False

    @classmethod
    def of(cls, suite, image_names: Sequence[str]) -> SuiteKeys:
        """The keys of a `idard.bench.suite.definition.Suite` over ``image_names``."""
        return cls(suite=suite.name, suite_hash=suite.digest(), images=tuple(image_names),
                   downscalers=tuple(suite.downscalers), models=tuple(suite.models), metrics=tuple(suite.metrics),
                   seeds=tuple(int(s) for s in suite.seeds), adaptive=suite.sampling is not None)

    def expr(self) -> pl.Expr:
        """True for records whose key belongs to the suite."""
        return (
            pl.col("image").is_in(list(self.images)) & pl.col("downscaler").is_in(list(self.downscalers))
            & pl.col("model").is_in(list(self.models)) & pl.col("metric").is_in(list(self.metrics))
            & pl.col("seed").is_in(list(self.seeds))
        )

    def shape(self) -> str:
        """``4 images x 5 downscalers x 1 model x 1 metric x 8 seeds``."""
        parts = [(len(self.images), "image"), (len(self.downscalers), "downscaler"), (len(self.models), "model"),
                 (len(self.metrics), "metric"), (len(self.seeds), "seed")]
        text = " x ".join(f"{n} {word}{'' if n == 1 else 's'}" for n, word in parts)
        if self.adaptive:  # each group drew its own K <= max: the K column says which
            text = text.rsplit(" x ", 1)[0] + f" x up to {len(self.seeds)} seeds by adaptive sampling"
        return text

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str) -> SuiteKeys:
        """Parse `to_json`'s text; a damaged file raises `ValueError` naming ``where``."""
        try:
            data = json.loads(text)
            return cls(suite=str(data["suite"]), suite_hash=str(data["suite_hash"]),
                       **{k: tuple(str(v) for v in data[k]) for k in ("images", "downscalers", "models", "metrics")},
                       seeds=tuple(int(s) for s in data["seeds"]), adaptive=bool(data.get("adaptive", False)))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{where}: not a suite-keys file ({exc}); re-run the suite to write it again, "
                             "or report with --all-records") from None


def read_suite_keys(store: RecordStore) -> SuiteKeys | None:
    """The keys the run directory's last run reduced, or None when it never recorded them
    (run directories of an idard before this file, records appended by hand)."""
    text = store.read_text(SUITE_KEYS)
    return None if text is None else SuiteKeys.from_json(text, f"{store.run_dir}/{SUITE_KEYS}")


def write_suite_keys(store: RecordStore, keys: SuiteKeys) -> str:
    return store.write_text(SUITE_KEYS, keys.to_json())


@dataclasses.dataclass(frozen=True)
class Scope:
    """The keys a report reduces (None: every record) and where they come from."""

    keys: SuiteKeys | None
    source: str

    def records(self, records: pl.LazyFrame) -> pl.LazyFrame:
        return records if self.keys is None else records.filter(self.keys.expr())

    def left_out(self, records: pl.LazyFrame) -> int:
        """How many of ``records`` the scope leaves out (one pass over the key columns)."""
        if self.keys is None:
            return 0
        total, kept = records.select(pl.len(), self.keys.expr().sum()).collect(engine="streaming").row(0)
        return int(total - (kept or 0))

    def describe(self, left_out: int = 0) -> str:
        """One line for every table's heading: which keys, from where, and what was left out."""
        if self.keys is None:
            return f"every record of the run directory ({self.source})"
        text = f"the keys of suite {self.keys.suite!r} ({self.keys.shape()}; {self.source})"
        if left_out:
            text += (f"; {left_out} other record{'s' if left_out != 1 else ''} in the run directory left out "
                     "(--all-records reduces them too)")
        return text


#: What a table reduced from records given directly (the Python API, tests) says.
GIVEN = Scope(None, "the records given")


def run_scope(keys: SuiteKeys) -> Scope:
    """The scope of a run directory's own suite: what ``run`` and ``report`` reduce."""
    return Scope(keys, f"as the run directory's last run recorded them in {SUITE_KEYS}")


def default_scope(store: RecordStore) -> Scope:
    """The run's suite's keys when the run recorded them, else every record (and why)."""
    keys = read_suite_keys(store)
    if keys is not None:
        return run_scope(keys)
    return Scope(None, f"no {SUITE_KEYS}: re-run its suite, which computes nothing, to reduce only the suite's keys")


def suite_copy_is_idards(store: RecordStore) -> bool | None:
    """Whether ``suite.yaml`` there was written by idard (None: there is none)."""
    try:
        head = store.read_bytes(SUITE_COPY)[: len(SUITE_COPY_HEADER)].decode(errors="replace")
    except FileNotFoundError:
        return None
    return head == SUITE_COPY_HEADER


def idard_made(store: RecordStore) -> bool:
    """False for a folder that holds a ``suite.yaml`` idard did not write (the suite's own
    folder, given as ``--out``): its ``ida_rd.md``, ``paired_*`` and ``report.html`` may be
    the user's, so reports are not written there."""
    return suite_copy_is_idards(store) is not False
