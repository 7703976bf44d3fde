"""The Wilcoxon signed-rank p-value of paired tables, computed without `scipy.stats` (whose
import cost more than a million-record report), equals scipy's."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats

from idard.measure.statistics import wilcoxon_p


def _scipy(d: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(stats.wilcoxon(d).pvalue)


def _cases():
    rng = np.random.default_rng(0)
    for n in (2, 3, 4, 6, 10, 13, 14, 30, 50, 51, 300):
        for shift in (0.0, 0.3, 1.5):
            yield rng.normal(shift, 1.0, n)  # distinct values: exact (n <= 50) or normal
            tied = np.round(rng.normal(shift, 1.0, n), 0)  # ties and zeros: permutation or normal
            if np.any(tied != 0):
                yield tied
            halves = np.round(rng.normal(shift, 1.0, n) * 2) / 2  # many ties, fewer zeros
            if np.any(halves != 0):
                yield halves


@pytest.mark.parametrize("diffs", list(_cases()))
def test_the_p_value_is_scipys(diffs: np.ndarray) -> None:
    ours, theirs = wilcoxon_p(diffs), _scipy(diffs)
    assert math.isclose(ours, theirs, rel_tol=1e-9, abs_tol=1e-12), (diffs.size, ours, theirs)


def test_the_smallest_p_of_n_images_is_two_over_two_to_the_n() -> None:
    for n in range(2, 8):
        assert wilcoxon_p(np.arange(1.0, n + 1)) == pytest.approx(2.0 / 2**n)
