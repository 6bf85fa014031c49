"""Readers and writers on data made here (no ../shared needed): round trips, units,
orientation, channel choice, NaN policy, validate()."""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from particlesnn import HeightMap, InputError
from particlesnn import io as pio
from particlesnn.io import gsf, wsxm_ascii, wsxm_binary


def _ramp(rows=12, cols=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(rows, cols)) * 3.7 + np.arange(cols) * 0.25


# ------------------------------------------------------------------ builders of small files
def make_sxm(path: Path, images: dict[str, np.ndarray], scan_dir="down", rng_m=(4e-8, 3e-8),
             pixels=None, cut=0) -> Path:
    """A minimal Nanonis SXM: channels stored forward then backward (backward mirrored in x)."""
    names = list(images)  # like ["Z", "Current"]; each value is (fwd, bwd) stacked in axis 0
    rows, cols = images[names[0]].shape[1:]
    px = pixels or (cols, rows)
    table = "\tChannel\tName\tUnit\tDirection\tCalibration\tOffset\n" + "".join(
        f"\t{i}\t{n}\t{'m' if n == 'Z' else 'A'}\tboth\t1.0E+0\t0.0E+0\n" for i, n in enumerate(names)
    )
    head = (
        ":NANONIS_VERSION:\n2\n:SCANIT_TYPE:\n              FLOAT            MSBFIRST\n"
        f":SCAN_PIXELS:\n       {px[0]}       {px[1]}\n"
        f":SCAN_RANGE:\n           {rng_m[0]:E}           {rng_m[1]:E}\n"
        f":SCAN_DIR:\n{scan_dir}\n:DATA_INFO:\n{table}\n:SCANIT_END:\n\n\n"
    ).encode()
    body = b""
    for n in names:
        fwd, bwd_display = images[n]
        body += fwd.astype(">f4").tobytes()
        body += bwd_display[:, ::-1].astype(">f4").tobytes()  # file holds backward mirrored
    data = head + b"\x1a\x04" + body
    path.write_bytes(data[: len(data) - cut] if cut else data)
    return path


def make_nid(path: Path, raw: np.ndarray, zmin=-1e-6, zrange=2e-6, xr=5e-6, yr=4e-6,
             lines_header=None, cut=0) -> Path:
    """A minimal Nanosurf NID with one forward topography channel (int16, stored bottom first)."""
    rows, cols = raw.shape
    head = (
        "[DataSet]\r\nVersion=2\r\nGroupCount=1\r\nGr0-Name=Scan forward\r\nGr0-ID=0\r\nGr0-Count=1\r\n"
        "Gr0-Ch1=DataSet-0:1\r\n\r\n[DataSet-0:1]\r\nVersion=2\r\n"
        f"Points={cols}\r\nLines={lines_header or rows}\r\nFrame=Scan forward\r\n"
        f"Dim0Name=X*\r\nDim0Unit=m\r\nDim0Range={xr}\r\nDim0Min=0\r\n"
        f"Dim1Name=Y*\r\nDim1Unit=m\r\nDim1Range={yr}\r\nDim1Min=0\r\n"
        f"Dim2Name=Topography\r\nDim2Unit=m\r\nDim2Range={zrange}\r\nDim2Min={zmin}\r\n"
        "SaveMode=Binary\r\nSaveBits=16\r\nSaveSign=Signed\r\nSaveOrder=Intel\r\n\r\n"
    ).encode()
    data = head + b"#!" + raw[::-1].astype("<i2").tobytes()
    path.write_bytes(data[: len(data) - cut] if cut else data)
    return path


def make_wsxm_top(path: Path, raw: np.ndarray, dtype="short", zamp="100 nm", xamp="2 \xb5m",
                  rows_header=None) -> Path:
    """A minimal WSxM binary image."""
    rows, cols = raw.shape
    body = (
        "[Control]\r\n"
        f"    X Amplitude: {xamp}\r\n    Y Amplitude: {xamp}\r\n"
        "[General Info]\r\n    Acquisition channel: Topography\r\n"
        f"    Image Data Type: {dtype}\r\n    Number of columns: {cols}\r\n"
        f"    Number of rows: {rows_header or rows}\r\n    Z Amplitude: {zamp}\r\n"
        "[Header end]\r\n"
    )
    pre = "WSxM file copyright UAM\r\nSxM Image file\r\nImage header size: {:d}\r\n"
    size = len(pre.format(0)) + len(body)
    while len(pre.format(size)) + len(body) != size:
        size = len(pre.format(size)) + len(body)
    text = pre.format(size) + body
    dt = {"short": "<i2", "double": "<f8", "integer": "<i4"}[dtype]
    path.write_bytes(text.encode("latin-1") + raw.astype(dt).tobytes())
    return path


def make_ibw(path: Path, layers: np.ndarray, labels: list[str], dx=5e-9) -> Path:
    """A minimal little-endian IBW v5 3D float32 wave (layers, ny, nx) with layer labels."""
    nl, ny, nx = layers.shape
    data = np.ascontiguousarray(layers, dtype="<f4").tobytes()  # x fastest, then y, then layer
    lab = b"\0" * 32 + b"".join(s.encode().ljust(32, b"\0") for s in labels)
    bh = struct.pack("<hhiiii4i4iiii", 5, 0, 320 + len(data), 0, 0, 0, 0, 0, 0, 0, 0, 0, len(lab), 0, 0, 0, 0)
    wh = bytearray(320)
    struct.pack_into("<i", wh, 12, nl * ny * nx)
    struct.pack_into("<h", wh, 16, 2)
    wh[28:28 + 4] = b"wave"
    struct.pack_into("<4i", wh, 68, nx, ny, nl, 0)
    struct.pack_into("<4d", wh, 84, dx, dx, 1.0, 1.0)
    wh[148:149] = b"m"
    wh[152:153] = b"m"
    wh[156:157] = b"m"
    path.write_bytes(bh + bytes(wh) + data + lab)
    return path


# ------------------------------------------------------------------ WSxM ASCII
def test_wsxm_ascii_round_trip_exact(tmp_path):
    data = _ramp()
    hm = HeightMap(data, pixel_size=(0.3, 0.45), channel="Topography", unit="nm")
    p = pio.write(hm, tmp_path / "a.txt")
    back = pio.read(p)
    assert back.metadata["format"] == "WSxM ASCII matrix"
    assert back.shape == data.shape
    assert np.array_equal(back.data, data)  # %.17g: bit-exact float64
    assert back.pixel_size == pytest.approx((0.3, 0.45), rel=1e-14)
    assert back.unit == "nm"
    # the paper's reader skips exactly 5 header lines, then TAB-separated rows
    lines = p.read_bytes().split(b"\r\n")
    assert lines[0] == b"WSxM file copyright UAM"
    assert len(lines[5].split(b"\t")) == data.shape[1]


def test_wsxm_ascii_units_and_decimal_comma(tmp_path):
    p = tmp_path / "c.txt"
    p.write_text(
        "WSxM file copyright Nanotec Electronica\nWSxM ASCII Matrix file\n"
        "X Amplitude: 1,5 \u00b5m\nY Amplitude: 30 \u00c5\nZ Amplitude: 2 \u00c5\n"
        + "\n".join("\t".join(f"{(r * 4 + c) / 2:.1f}".replace(".", ",") for c in range(4)) for r in range(3)),
        encoding="latin-1",
    )
    hm = wsxm_ascii.read(p)
    assert hm.shape == (3, 4)
    assert hm.pixel_size == pytest.approx((1500 / 4, 3.0 / 3))  # 1.5 µm / 4 px; 30 Å / 3 px
    # values in Å -> nm
    assert hm.data[1, 2] == pytest.approx(((1 * 4 + 2) / 2) * 0.1)


def test_headerless_matrix_has_no_scale(tmp_path):
    p = tmp_path / "plain.txt"
    p.write_text("1 2 3\n4 5 6\n")
    hm = pio.read(p)
    assert hm.pixel_size is None and hm.unit == "a.u."
    assert hm.data.tolist() == [[1, 2, 3], [4, 5, 6]]


def test_wsxm_ascii_no_scale_round_trip(tmp_path):
    hm = HeightMap(_ramp(9, 10), pixel_size=None, unit="a.u.")
    back = pio.read(pio.write(hm, tmp_path / "n.txt"))
    assert back.pixel_size is None
    assert np.array_equal(back.data, hm.data)


# ------------------------------------------------------------------ GSF
def test_gsf_round_trip_exact_float32(tmp_path):
    data = _ramp(10, 13).astype(np.float32)
    hm = HeightMap(data, pixel_size=(2.5, 1.25), channel="Height", unit="nm")
    p = pio.write(hm, tmp_path / "a.gsf")
    raw = p.read_bytes()
    header_len = raw.find(b"\0")
    offset = (header_len // 4 + 1) * 4
    assert len(raw) == offset + data.size * 4  # NUL padding to a multiple of 4, float32 data
    back = pio.read(p)
    assert back.metadata["format"] == "Gwyddion Simple Field"
    assert back.data.dtype == np.float64
    assert np.array_equal(back.data.astype(np.float32), data)
    assert back.pixel_size == pytest.approx((2.5, 1.25), rel=1e-12)
    assert back.channel == "Height" and back.unit == "nm"


def test_gsf_non_height_unit_kept(tmp_path):
    hm = HeightMap(_ramp(8, 8).astype(np.float32), pixel_size=(1.0, 1.0), channel="Iprobe", unit="nA")
    back = gsf.read(gsf.write(tmp_path / "i.gsf", hm))
    assert back.unit == "nA"
    assert np.array_equal(back.data.astype(np.float32), hm.data)


def test_gsf_metres_converted_to_nm(tmp_path):
    p = tmp_path / "m.gsf"
    head = b"Gwyddion Simple Field 1.0\nXRes = 2\nYRes = 2\nXReal = 1e-6\nYReal = 2e-6\nZUnits = m\n"
    head += b"\0" * (4 - len(head) % 4)
    p.write_bytes(head + np.array([1e-9, 2e-9, 3e-9, 4e-9], "<f4").tobytes())
    hm = gsf.read(p)
    assert hm.pixel_size == pytest.approx((500.0, 1000.0))
    assert hm.data == pytest.approx(np.array([[1, 2], [3, 4]]), rel=1e-6)


# ------------------------------------------------------------------ Nanonis SXM
def test_sxm_orientation_and_backward_mirror(tmp_path):
    fwd = _ramp(6, 8) * 1e-9
    bwd = fwd + 1e-10
    cur = np.stack([fwd * 0 + 1e-9, fwd * 0 + 2e-9])
    p = make_sxm(tmp_path / "d.sxm", {"Z": np.stack([fwd, bwd]), "Current": cur}, scan_dir="down")
    assert pio.list_channels(p) == ["Z_fwd", "Z_bwd", "Current_fwd", "Current_bwd"]
    hm = pio.read(p)
    assert hm.channel == "Z_fwd" and hm.unit == "nm"
    assert np.allclose(hm.data, fwd * 1e9, atol=1e-5)
    assert hm.pixel_size == pytest.approx((40 / 8, 30 / 6))
    back = pio.read(p, "Z_bwd")
    assert np.allclose(back.data, bwd * 1e9, atol=1e-5)  # mirrored back to overlay forward
    cur_b = pio.read(p, "current backward")
    assert cur_b.unit == "nA" and np.allclose(cur_b.data, 2.0)
    up = make_sxm(tmp_path / "u.sxm", {"Z": np.stack([fwd, bwd])}, scan_dir="up")
    assert np.allclose(pio.read(up).data, fwd[::-1] * 1e9, atol=1e-5)  # bottom line stored first


def test_sxm_unknown_channel_lists_channels(tmp_path):
    fwd = _ramp(6, 8) * 1e-9
    p = make_sxm(tmp_path / "d.sxm", {"Z": np.stack([fwd, fwd])})
    with pytest.raises(InputError, match=r"no channel 'Phase' \(channels: Z_fwd, Z_bwd\)"):
        pio.read(p, "Phase")


# ------------------------------------------------------------------ NID, WSxM binary, IBW
def test_nid_scaling_and_flip(tmp_path):
    raw = np.array([[-32768, 0, 32767], [100, 200, 300]], dtype=np.int16)
    p = make_nid(tmp_path / "a.nid", raw)
    hm = pio.read(p)
    assert hm.channel == "Topography_fwd" and hm.unit == "nm"
    # z = zmin + (raw + 32768) / 65536 * zrange, in nm
    expect = (-1e-6 + (raw.astype(float) + 32768) / 65536 * 2e-6) * 1e9
    assert np.allclose(hm.data, expect)
    assert hm.pixel_size == pytest.approx((5000 / 3, 4000 / 2))


def test_wsxm_binary_short_and_double(tmp_path):
    raw = np.array([[0, 10], [20, 40]], dtype=np.int16)
    hm = wsxm_binary.read(make_wsxm_top(tmp_path / "s.top", raw, zamp="80 nm"))
    assert np.allclose(hm.data, raw * 2.0)  # 80 nm over a raw span of 40
    assert hm.pixel_size == pytest.approx((1000.0, 1000.0))  # 2 µm / 2 px
    vals = np.array([[0.5, 1.5], [2.5, 3.5]])
    hd = pio.read(make_wsxm_top(tmp_path / "d.top", vals, dtype="double", zamp="30 \xc5"))
    assert np.allclose(hd.data, vals * 0.1)  # double data in the Z unit (Å) -> nm


def test_ibw_layers_labels_and_flip(tmp_path):
    layers = np.stack([_ramp(4, 5) * 1e-9, _ramp(4, 5, 1) * 1e-9, _ramp(4, 5, 2)]).astype(np.float32)
    p = make_ibw(tmp_path / "w.ibw", layers, ["HeightRetrace", "DeflectionRetracee", "PhaseRetrace"])
    assert pio.list_channels(p) == ["HeightRetrace", "DeflectionRetrace", "PhaseRetrace"]
    hm = pio.read(p)
    assert hm.channel == "HeightRetrace" and hm.unit == "nm"
    assert np.allclose(hm.data, layers[0][::-1] * 1e9, rtol=1e-6)  # Igor y axis up -> flipped
    assert hm.pixel_size == pytest.approx((5.0, 5.0))
    ph = pio.read(p, "PhaseRetrace")
    assert ph.unit == "deg" and np.allclose(ph.data, layers[2][::-1])


# ------------------------------------------------------------------ NaN policy, validate, detect
def test_few_nans_filled_all_nan_rejected(tmp_path):
    data = _ramp(10, 10)
    data[3, 4] = np.nan
    data[0, 0] = np.inf
    p = pio.write(HeightMap(data, pixel_size=(1, 1)), tmp_path / "n.txt")
    hm = pio.read(p)
    assert np.isfinite(hm.data).all()
    assert hm.metadata["nan_filled"] == 2
    assert "filled" in hm.metadata["warnings"][0]
    assert hm.data[3, 4] in {data[2, 4], data[4, 4], data[3, 3], data[3, 5]}
    allnan = pio.write(HeightMap(np.full((9, 9), np.nan), pixel_size=(1, 1)), tmp_path / "all.txt")
    with pytest.raises(InputError, match=r"all\.txt: no valid pixel"):
        pio.read(allnan)


@pytest.mark.parametrize(
    "data, problem",
    [
        (np.zeros((0, 0)), "empty image"),
        (np.ones((7, 20)), "too small"),
        (np.full((10, 10), 3.0), "constant image"),
        (np.full((10, 10), np.nan), "no valid pixel"),
        (np.where(np.eye(10) > 0, np.nan, np.arange(100.0).reshape(10, 10)), "NaN/inf pixel"),
    ],
)
def test_validate_rejects(data, problem):
    hm = HeightMap.__new__(HeightMap)  # bypass __post_init__ to allow the empty case
    hm.data, hm.pixel_size, hm.channel, hm.unit = data, None, "Z", "nm"
    hm.source, hm.metadata = Path("x.sxm"), {}
    with pytest.raises(InputError, match=f"x.sxm: .*{problem}"):
        pio.validate(hm)


def test_validate_accepts_and_rejects_3d():
    hm = HeightMap(_ramp(8, 8), pixel_size=(1, 1))
    assert pio.validate(hm) is hm
    hm.data = np.zeros((8, 8, 3))
    with pytest.raises(InputError, match="not 2D"):
        pio.validate(hm, "y.gwy")


def test_unknown_and_empty_and_missing(tmp_path):
    junk = tmp_path / "junk.xyz"
    junk.write_bytes(b"\x00\x01garbage" * 20)
    with pytest.raises(InputError, match="junk.xyz: unknown or unsupported format"):
        pio.read(junk)
    txt = tmp_path / "notes.txt"
    txt.write_text("hello world\nthis is no matrix\n")
    with pytest.raises(InputError, match="notes.txt: unknown or unsupported format"):
        pio.read(txt)
    empty = tmp_path / "e.sxm"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="e.sxm: empty file"):
        pio.read(empty)
    with pytest.raises(InputError, match="nope.gsf: file not found"):
        pio.read(tmp_path / "nope.gsf")


def test_content_wins_over_extension(tmp_path):
    hm = HeightMap(_ramp(8, 9).astype(np.float32), pixel_size=(1, 1))
    p = gsf.write(tmp_path / "really_gsf.sxm", hm)  # wrong extension
    assert pio.detect(p) == "gsf"
    assert np.array_equal(pio.read(p).data.astype(np.float32), hm.data)


def test_write_unknown_extension(tmp_path):
    with pytest.raises(InputError, match="cannot write .xyz"):
        pio.write(HeightMap(_ramp()), tmp_path / "a.xyz")


def test_supported_lists_formats():
    for ext in (".txt", ".gsf", ".gwy", ".sxm", ".top", ".stp", ".ibw", ".mdt", ".nid", ".001", ".spm", ".png"):
        assert ext in pio.SUPPORTED
