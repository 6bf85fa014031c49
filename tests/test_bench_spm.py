"""The real-file comparison of benchmarks/spm_samples.py: which objects a candidate changes."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from spm_samples import changes  # noqa: E402


def test_changes_matches_one_to_one_and_lists_the_rest():
    a = np.zeros((40, 60), np.int32)
    a[2:10, 2:10] = 1      # kept as it is
    a[20:30, 20:30] = 2    # split in three by b: no part reaches IoU 0.5
    a[2:8, 40:46] = 3      # gone in b
    b = np.zeros_like(a)
    b[2:10, 2:10] = 2      # the same object under another label
    b[20:30, 20:23] = 1
    b[20:30, 23:27] = 3
    b[20:30, 27:30] = 5
    b[32:38, 50:56] = 4    # new
    same, new, gone = changes(a, b)
    assert same == 1
    assert new == [1, 3, 4, 5]
    assert gone == [2, 3]
    assert changes(a, a) == (3, [], [])
