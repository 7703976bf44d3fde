"""The suite room: what to compute, as data, before anything runs.

* `definition`: suite files (`Suite`, `load_suite`), validated key by key.
* `sources`: the image sources a suite lists (folders, globs, object stores, bundled sets).
* `checks`: the paper's findings as data (``checks:``), and their verdicts on a table.
* `scope`: the keys of a suite over its images, as the run records them for its report.
* `reference`: the pseudo-models of full-reference suites.
* `subset`: balanced subsets of labelled image sets.
* `safe_yaml`: the one bounded YAML loader of every file idard reads.

Arrows go one way: this room imports the store room and `idard.measure`, never the runner,
the report or the command line.
"""

from idard.bench.suite.definition import (
    Suite,
    SuiteError,
    load_suite,
    parse_suite,
    read_suite_file,
    run_dir_name,
    suite_document,
    suite_name,
)

__all__ = ["Suite", "SuiteError", "load_suite", "parse_suite", "read_suite_file", "run_dir_name", "suite_document",
           "suite_name"]
