"""Shared test fixtures. Tests that need ../shared skip when it is absent."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SAMPLES = SHARED / "samples"
REAL = SHARED / "real"


@pytest.fixture
def samples_dir() -> Path:
    if not SAMPLES.is_dir():
        pytest.skip("../shared/samples not present")
    return SAMPLES


@pytest.fixture
def real_dir() -> Path:
    if not REAL.is_dir():
        pytest.skip("../shared/real not present")
    return REAL


@pytest.fixture
def bumps_and_pit():
    """A factory of flat STM-like height maps (nm, 0.1 nm/px, 256 px) with five round features
    of height ``bumps`` nm (negative: pits) and, for ``pit_depth`` > 0, one wide pit that deep
    (the tail statistic calls the map with the pit dark)."""
    from particlesnn.heightmap import HeightMap

    def make(pit_depth: float = 2.0, bumps: float = 1.0) -> HeightMap:
        rng = np.random.default_rng(0)
        yy, xx = np.mgrid[:256, :256]
        z = rng.normal(0.0, 0.02, (256, 256))
        z[(yy - 170) ** 2 + (xx - 160) ** 2 < 45**2] -= pit_depth
        for cy, cx in [(40, 40), (40, 120), (50, 210), (120, 40), (200, 40)]:
            z += bumps * np.sqrt(np.clip(1 - ((yy - cy) ** 2 + (xx - cx) ** 2) / 7.0**2, 0, None))
        return HeightMap(z, pixel_size=(0.1, 0.1), unit="nm")

    return make
