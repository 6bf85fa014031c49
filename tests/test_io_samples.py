"""Every sample in ../shared/samples reads with the shape, scale and value range that
../shared/samples/SOURCES.md gives (skipped when ../shared is absent)."""
from __future__ import annotations

import numpy as np
import pytest

from particlesnn import io as pio

# file, format, channel (None = default), expected channel, shape, pixel size nm/px,
# (min, max) in unit, tolerance on min/max, unit
CASES = [
    ("sxm/STM_Au-111_Flat.sxm", "Nanonis SXM", None, "Z_fwd", (256, 256), 40 / 256, (-120.46, -120.40), 0.005, "nm"),
    ("sxm/pySPM_test.sxm", "Nanonis SXM", None, "Z_fwd", (256, 256), 5000 / 256, (-555.7, -439.6), 0.05, "nm"),
    ("gwy/PTO_110_Virgin0001.gwy", "Gwyddion", None, "HeightRetrace", (256, 256), 10039.2 / 256, (-15.5, 110.0), 0.5, "nm"),
    ("gsf/GwiddionReader_chip.gsf", "Gwyddion Simple Field", None, "Topography", (300, 300), 80000 / 300, (12510, 19500), 10, "nm"),
    ("nid/image.nid", "Nanosurf NID", None, "Z-Axis_fwd", (256, 256), 7410 / 256, (1278, 1841), 1, "nm"),
    ("nid/circles.nid", "Nanosurf NID", None, "Topography_fwd", (256, 256), 50000 / 256, (-441, 543), 1, "nm"),
    ("nanoscope/full_multiple_images.001", "Bruker NanoScope", None, "Height", (512, 512), 2000 / 512, (-729.8, -397.3), 0.1, "nm"),
    ("nanoscope/full_multiple_images.001", "Bruker NanoScope", "Amplitude", "Amplitude", (512, 512), 2000 / 512, (-0.089, 0.108), 0.001, "V"),
    ("ibw/IgorIBWReader_P0089OP0027.ibw", "Igor binary wave", None, "HeightRetrace", (256, 256), 7.843, (-22.5, 25.1), 0.1, "nm"),
    ("mdt/test_mdt.mdt", "NT-MDT MDT", None, "1F:Iprobe", (256, 256), 3000 / 256, (-0.059, 52.7), 0.05, "nA"),
    ("wsxm/WSxM2DReader_jumpingmodeimage_0002_Topography.f.dy.top", "WSxM binary", None, "Topography", (256, 256), 15000 / 256, (145.5, 484.4), 0.1, "nm"),
    ("wsxm/STM_Au-111_Flat_Zfwd.txt", "WSxM ASCII matrix", None, "Topography", (256, 256), 40 / 256, (0.0, 0.0480176), 1e-7, "nm"),
    ("wsxm/PTO_110_Virgin0001_HeightRetrace.txt", "WSxM ASCII matrix", None, "Topography", (256, 256), 10039.2 / 256, (0.0, 125.095), 1e-3, "nm"),
    ("wsxm/full_multiple_images_Height_512.txt", "WSxM ASCII matrix", None, "Topography", (512, 512), 2000 / 512, (0.0, 44.3381), 1e-4, "nm"),
]


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}:{c[3]}" for c in CASES])
def test_sample_reads_with_sources_numbers(samples_dir, case):
    rel, fmt, channel, exp_channel, shape, px, (lo, hi), tol, unit = case
    hm = pio.read(samples_dir / rel, channel=channel)
    assert hm.metadata["format"] == fmt
    assert hm.channel == exp_channel
    assert hm.shape == shape
    assert hm.unit == unit
    # pixel size within 0.5 % (SOURCES rounds sizes to 3-4 digits)
    assert hm.pixel_size[0] == pytest.approx(px, rel=5e-3)
    assert hm.pixel_size[1] == pytest.approx(px, rel=5e-3)
    assert float(hm.data.min()) == pytest.approx(lo, abs=tol)
    assert float(hm.data.max()) == pytest.approx(hi, abs=tol)
    assert np.isfinite(hm.data).all()
    assert exp_channel in hm.metadata["channels"]
    assert pio.list_channels(samples_dir / rel) == hm.metadata["channels"]


def test_channel_lists(samples_dir):
    assert pio.list_channels(samples_dir / "sxm/STM_Au-111_Flat.sxm") == ["Z_fwd", "Z_bwd", "Current_fwd", "Current_bwd"]
    assert pio.list_channels(samples_dir / "gwy/PTO_110_Virgin0001.gwy") == [
        "HeightRetrace", "AmplitudeRetrace", "DeflectionRetrace", "PhaseRetrace"]
    assert pio.list_channels(samples_dir / "ibw/IgorIBWReader_P0089OP0027.ibw") == [
        "HeightRetrace", "AmplitudeRetrace", "DeflectionRetrace", "PhaseRetrace", "UserIn0Retrace"]
    assert pio.list_channels(samples_dir / "nid/circles.nid") == [
        "Topography_fwd", "Amplitude_fwd", "Topography_bwd", "Amplitude_bwd"]
    assert pio.list_channels(samples_dir / "nanoscope/full_multiple_images.001") == ["Height", "Amplitude"]
    assert pio.list_channels(samples_dir / "mdt/test_mdt.mdt") == ["1F:Iprobe"]


def test_other_channel_units(samples_dir):
    cur = pio.read(samples_dir / "sxm/STM_Au-111_Flat.sxm", "Current")
    assert cur.unit == "nA" and cur.channel == "Current_fwd"
    ph = pio.read(samples_dir / "gwy/PTO_110_Virgin0001.gwy", "PhaseRetrace")
    assert ph.unit == "deg" and -91 < ph.data.min() and ph.data.max() < 271
    amp = pio.read(samples_dir / "nid/image.nid", "Amplitude")
    assert amp.unit == "V" and amp.channel == "Amplitude_fwd"
    phase = pio.read(samples_dir / "nid/image.nid", "Phase_bwd")
    assert phase.unit == "deg"
    assert pio.read(samples_dir / "mdt/test_mdt.mdt", "Iprobe").channel == "1F:Iprobe"


def test_nanoscope_step_is_0_0867_nm(samples_dir):
    d = pio.read(samples_dir / "nanoscope/full_multiple_images.001").data
    steps = np.diff(np.unique(d))
    assert steps.min() == pytest.approx(12.95302 * 0.006693481, rel=1e-3)  # 0.0867 nm/LSB


def _levelled(d):
    rows, cols = d.shape
    yy, xx = np.mgrid[:rows, :cols]
    a = np.c_[xx.ravel(), yy.ravel(), np.ones(d.size)]
    coef, *_ = np.linalg.lstsq(a, d.ravel(), rcond=None)
    out = d - (a @ coef).reshape(d.shape)
    return out - out.min()


@pytest.mark.parametrize(
    "orig, channel, txt, flip",
    [
        ("sxm/STM_Au-111_Flat.sxm", "Z_fwd", "wsxm/STM_Au-111_Flat_Zfwd.txt", False),
        ("gwy/PTO_110_Virgin0001.gwy", "HeightRetrace", "wsxm/PTO_110_Virgin0001_HeightRetrace.txt", False),
        # the .txt kept the NanoScope rows in file order (bottom line first); the reader flips them
        ("nanoscope/full_multiple_images.001", "Height", "wsxm/full_multiple_images_Height_512.txt", True),
    ],
)
def test_wsxm_conversions_match_originals(samples_dir, orig, channel, txt, flip):
    """The WSxM .txt files were made from the originals (plane removed, min 0, %.6g)."""
    a = _levelled(pio.read(samples_dir / orig, channel).data)
    b = pio.read(samples_dir / txt).data
    if flip:
        b = b[::-1]
    span = b.max() - b.min()
    # float32 storage of the originals limits agreement to ~1e-4 of the span; a flip gives ~span
    assert np.abs(a - b).max() < 2e-3 * span


def test_nanonis_backward_overlays_forward(samples_dir):
    """Backward images are stored mirrored in x; after reading they overlay the forward one."""

    def corr(x, y):
        x = x - x.mean(1, keepdims=True)
        y = y - y.mean(1, keepdims=True)
        return float((x * y).sum() / np.sqrt((x * x).sum() * (y * y).sum()))

    for name in ("sxm/STM_Au-111_Flat.sxm", "sxm/pySPM_test.sxm"):
        f = pio.read(samples_dir / name, "Z_fwd").data
        b = pio.read(samples_dir / name, "Z_bwd").data
        assert corr(f, b) > 0.5
        assert corr(f, b[:, ::-1]) < 0.0


def test_all_samples_validate(samples_dir):
    for rel, *_ in CASES:
        pio.validate(pio.read(samples_dir / rel))
