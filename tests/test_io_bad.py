"""Bad input for every reader: truncated, wrong format, lying header, NaNs, empty, constant.

Each must raise particlesnn.InputError whose one-line message names the file and the
problem (never another exception). Tests that cut real files skip when ../shared is absent.
"""
from __future__ import annotations

import os
import re
import struct
from pathlib import Path

import numpy as np
import pytest

from particlesnn import HeightMap, InputError
from particlesnn import io as pio
from particlesnn.io import gsf, gwy, ibw, mdt, nanonis, nanoscope, nid, wsxm_ascii, wsxm_binary

from test_io_formats import make_ibw, make_nid, make_sxm, make_wsxm_top

# one real sample per reader
REAL = {
    nanonis: "sxm/STM_Au-111_Flat.sxm",
    gwy: "gwy/PTO_110_Virgin0001.gwy",
    gsf: "gsf/GwiddionReader_chip.gsf",
    nid: "nid/circles.nid",
    nanoscope: "nanoscope/full_multiple_images.001",
    ibw: "ibw/IgorIBWReader_P0089OP0027.ibw",
    mdt: "mdt/test_mdt.mdt",
    wsxm_binary: "wsxm/WSxM2DReader_jumpingmodeimage_0002_Topography.f.dy.top",
    wsxm_ascii: "wsxm/STM_Au-111_Flat_Zfwd.txt",
}
IDS = [m.__name__.rsplit(".", 1)[1] for m in REAL]


def _raises(fn, path: Path, pattern: str):
    with pytest.raises(InputError) as info:
        fn(path)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path.name}: "), msg
    assert re.search(pattern, msg), msg
    return msg


def _copy_cut(src: Path, dst: Path, n: int) -> Path:
    dst.write_bytes(src.read_bytes()[:n])
    return dst


@pytest.mark.parametrize("mod", list(REAL), ids=IDS)
@pytest.mark.parametrize("frac", [0.6, 0.05])
def test_truncated_real_file(samples_dir, tmp_path, mod, frac):
    src = samples_dir / REAL[mod]
    size = src.stat().st_size
    cut = _copy_cut(src, tmp_path / f"cut{src.suffix}", int(size * frac))
    _raises(mod.read, cut, r"truncated|ragged|damaged|no numeric|not terminated|no data marker|header")
    _raises(pio.read, cut, r"truncated|ragged|damaged|no numeric|not terminated|no data marker|header")


@pytest.mark.parametrize("mod", list(REAL), ids=IDS)
def test_empty_file(tmp_path, mod):
    ext = Path(REAL[mod]).suffix
    empty = tmp_path / f"empty{ext}"
    empty.write_bytes(b"")
    _raises(mod.read, empty, "empty file")
    _raises(pio.read, empty, "empty file")


@pytest.mark.parametrize("mod", list(REAL), ids=IDS)
def test_wrong_format_given_to_reader(samples_dir, tmp_path, mod):
    """Each reader refuses other formats' files (and a text file) with an InputError."""
    for other, rel in REAL.items():
        if other is mod:
            continue
        _raises(mod.read, samples_dir / rel, r".")
    txt = tmp_path / "readme.txt"
    txt.write_text("Just some words,\nnot a scan.\n")
    _raises(mod.read, txt, r".")


def test_wrong_format_by_extension(tmp_path):
    fake = tmp_path / "scan.sxm"
    fake.write_text("this is not a Nanonis file\n" * 5)
    _raises(pio.read, fake, r"unknown or unsupported format \(content is not Nanonis SXM\)")


# ----------------------------------------------------------------------- lying headers
def _patch(src: Path, dst: Path, old: bytes, new: bytes) -> Path:
    data = src.read_bytes()
    assert old in data
    dst.write_bytes(data.replace(old, new, 1))
    return dst


def test_sxm_header_lies(samples_dir, tmp_path):
    src = samples_dir / REAL[nanonis]
    big = _patch(src, tmp_path / "big.sxm", b"       256       256\n", b"       256       512\n")
    _raises(nanonis.read, big, r"truncated file or wrong size in header")
    small = _patch(src, tmp_path / "small.sxm", b"       256       256\n", b"       256       128\n")
    _raises(nanonis.read, small, r"bytes more than .*wrong SCAN_PIXELS")


def test_gsf_header_lies(samples_dir, tmp_path):
    src = samples_dir / REAL[gsf]
    _raises(gsf.read, _patch(src, tmp_path / "a.gsf", b"XRes = 300", b"XRes = 301"), "truncated")
    _raises(gsf.read, _patch(src, tmp_path / "b.gsf", b"XRes = 300", b"XRes = 299"), "bytes more than")


def test_nid_header_lies(samples_dir, tmp_path):
    src = samples_dir / REAL[nid]
    data = src.read_bytes().replace(b"Lines=256\r\nFrame=Scan forward", b"Lines=512\r\nFrame=Scan forward", 1)
    (tmp_path / "l.nid").write_bytes(data)
    _raises(nid.read, tmp_path / "l.nid", "truncated file or wrong size")


def test_nanoscope_header_lies(samples_dir, tmp_path):
    src = samples_dir / REAL[nanoscope]
    p = _patch(src, tmp_path / "s.001", b"\\Samps/line: 512\r\n\\Number of lines: 512",
               b"\\Samps/line: 256\r\n\\Number of lines: 512")
    _raises(nanoscope.read, p, r"Number of lines = 512 but Data length and Samps/line give 1024")
    q = _patch(src, tmp_path / "o.001", b"\\Data offset: 565248", b"\\Data offset: 965248")
    _raises(nanoscope.read, q, r"truncated file or wrong size in header \(image 'Amplitude'")


def test_wsxm_binary_header_lies(samples_dir, tmp_path):
    src = samples_dir / REAL[wsxm_binary]
    p = _patch(src, tmp_path / "r.top", b"Number of rows: 256", b"Number of rows: 300")
    _raises(wsxm_binary.read, p, "truncated file or wrong size")
    t = _patch(src, tmp_path / "t.top", b"Image Data Type: short", b"Image Data Type: quaternion")
    _raises(wsxm_binary.read, t, "unsupported Image Data Type")


def test_wsxm_ascii_header_lies_and_ragged(tmp_path):
    p = tmp_path / "r.txt"
    p.write_text("WSxM file copyright UAM\nWSxM ASCII Matrix file\nX Amplitude: 10 nm\nY Amplitude: 10 nm\n"
                 "Number of rows: 5\n1\t2\n3\t4\n")
    _raises(wsxm_ascii.read, p, r"number of rows = 5 but the file holds 2")
    q = tmp_path / "q.txt"
    q.write_text("WSxM file copyright UAM\nWSxM ASCII Matrix file\nX Amplitude: 10 nm\nY Amplitude: 10 nm\n"
                 "1\t2\t3\n3\t4\n")
    _raises(wsxm_ascii.read, q, r"ragged matrix: data row 1 has 2 values, row 0 has 3")
    r = tmp_path / "noscale.txt"
    r.write_text("WSxM file copyright UAM\nWSxM ASCII Matrix file\n1\t2\n3\t4\n")
    _raises(wsxm_ascii.read, r, "no X/Y Amplitude")


def test_ibw_header_lies(samples_dir, tmp_path):
    src = samples_dir / REAL[ibw]
    data = bytearray(src.read_bytes())
    struct.pack_into("<i", data, 64 + 68 + 4, 300)  # nDim[1]: 256 -> 300
    (tmp_path / "d.ibw").write_bytes(bytes(data))
    _raises(ibw.read, tmp_path / "d.ibw", r"do not match 327680 points")


def test_mdt_header_lies(samples_dir, tmp_path):
    src = samples_dir / REAL[mdt]
    data = bytearray(src.read_bytes())
    # first calibration record of the image frame (x dimension): max index 255 -> 511
    first_cal = 45429 - 3 * 124
    off = first_cal + 20 + 8 * 5 + 8  # tot, struct len, 3 lengths; 5 x 8-byte fields; min index
    assert struct.unpack_from("<Q", data, off)[0] == 255
    struct.pack_into("<Q", data, off, 511)
    (tmp_path / "d.mdt").write_bytes(bytes(data))
    _raises(mdt.read, tmp_path / "d.mdt", r"65536 cells but dimensions say 512 x 256")


def test_gwy_header_lies(tmp_path):
    from gwyfile.objects import GwyContainer, GwyDataField

    c = GwyContainer()
    c["/0/data"] = GwyDataField(np.arange(20.0).reshape(4, 5), xreal=1e-6, yreal=1e-6)
    c["/0/data/title"] = "Height"
    c.tofile(str(tmp_path / "ok.gwy"))
    assert gwy.read(tmp_path / "ok.gwy").shape == (4, 5)
    raw = bytearray((tmp_path / "ok.gwy").read_bytes())
    i = raw.find(b"xres\0i")
    struct.pack_into("<i", raw, i + 6, 6)
    (tmp_path / "bad.gwy").write_bytes(bytes(raw))
    _raises(gwy.read, tmp_path / "bad.gwy", "inconsistent Gwyddion file")
    (tmp_path / "old.gwy").write_bytes(b"GWYO" + bytes(100))
    _raises(pio.read, tmp_path / "old.gwy", r"Gwyddion 1\.x")


def test_synthetic_headers_lie(tmp_path):
    """The same checks without ../shared, on files made here."""
    fwd = np.ones((6, 8)) * 1e-9
    fwd[0, 0] = 2e-9
    p = make_sxm(tmp_path / "t.sxm", {"Z": np.stack([fwd, fwd])}, cut=10)
    _raises(pio.read, p, "truncated")
    q = make_sxm(tmp_path / "p.sxm", {"Z": np.stack([fwd, fwd])}, pixels=(8, 7))
    _raises(pio.read, q, "truncated file or wrong size in header")
    n = make_nid(tmp_path / "n.nid", np.arange(12, dtype=np.int16).reshape(3, 4), lines_header=9)
    _raises(pio.read, n, "truncated file or wrong size in header")
    w = make_wsxm_top(tmp_path / "w.top", np.arange(12).reshape(3, 4), rows_header=8)
    _raises(pio.read, w, "truncated file or wrong size in header")


# ----------------------------------------------------------------------- NaNs
def test_nan_policy_sxm_unfinished_scan(tmp_path):
    """An aborted Nanonis scan holds NaN lines: they are left out (with the line where the scan
    stopped, half scanned), so the map is the scanned part and densities hold; a warning says
    so, and a label image goes back into the file's frame. A hole inside is filled."""
    fwd = np.add.outer(np.arange(10.0), np.arange(12.0)) * 1e-10
    part = fwd.copy()
    part[7:] = np.nan
    part[6, 5:] = np.nan  # the scan stopped in the middle of line 6
    part[2, 3] = np.nan  # a hole inside: filled
    p = make_sxm(tmp_path / "a.sxm", {"Z": np.stack([part, part])})
    hm = pio.read(p)
    assert hm.shape == (6, 12) and np.allclose(hm.data[3:], fwd[3:6] * 1e9)
    assert hm.metadata["scanned_region"] == [0, 6, 0, 12] and hm.metadata["file_shape"] == [10, 12]
    assert hm.metadata["nan_filled"] == 1
    assert any(w.startswith("unfinished scan: rows 6-9 of 12 x 10 px") for w in hm.metadata["warnings"])
    lab = np.ones(hm.shape, np.uint16)
    back = pio.in_file_frame(lab, hm)
    assert back.shape == (10, 12) and back[:6].all() and not back[6:].any()
    up = fwd.copy()
    up[:3] = np.nan  # a scan run upwards, stopped: the empty lines are at the top
    hm = pio.read(make_sxm(tmp_path / "u.sxm", {"Z": np.stack([up, up])}))
    assert hm.shape == (7, 12) and hm.metadata["scanned_region"] == [3, 10, 0, 12]
    allnan = make_sxm(tmp_path / "b.sxm", {"Z": np.stack([fwd * np.nan, fwd * np.nan])})
    _raises(pio.read, allnan, "no valid pixel")


def test_nan_policy_gsf_ibw_and_double_wsxm(tmp_path):
    d = np.arange(64, dtype=np.float32).reshape(8, 8)
    d[2, 2] = np.nan
    g = gsf.write(tmp_path / "n.gsf", HeightMap(d, pixel_size=(1, 1)))
    hm = pio.read(g)
    assert hm.metadata["nan_filled"] == 1 and np.isfinite(hm.data).all()
    i = make_ibw(tmp_path / "n.ibw", np.stack([d * 1e-9]), ["HeightRetrace"])
    assert pio.read(i).metadata["nan_filled"] == 1
    w = make_wsxm_top(tmp_path / "n.top", d.astype(np.float64), dtype="double")
    assert pio.read(w).metadata["nan_filled"] == 1
    allnan = gsf.write(tmp_path / "all.gsf", HeightMap(np.full((8, 8), np.nan, np.float32), pixel_size=(1, 1)))
    _raises(pio.read, allnan, "no valid pixel")


def test_nan_policy_mdt(samples_dir, tmp_path):
    data = bytearray((samples_dir / REAL[mdt]).read_bytes())
    struct.pack_into("<d", data, 45429 + 8 * 1000, float("nan"))
    (tmp_path / "n.mdt").write_bytes(bytes(data))
    hm = pio.read(tmp_path / "n.mdt")
    assert hm.metadata["nan_filled"] == 1 and np.isfinite(hm.data).all()


# ----------------------------------------------------------------------- constant images
def test_constant_image_reads_but_does_not_validate(tmp_path):
    c = gsf.write(tmp_path / "c.gsf", HeightMap(np.full((16, 16), 5.0, np.float32), pixel_size=(1, 1)))
    hm = pio.read(c)
    assert hm.data.min() == hm.data.max() == 5.0
    with pytest.raises(InputError, match=r"c.gsf: constant image"):
        pio.validate(hm)
    raw = np.full((10, 10), 7, dtype=np.int16)
    hz = pio.read(make_wsxm_top(tmp_path / "c.top", raw))  # zero raw span: no division by 0
    assert np.isfinite(hz.data).all()
    with pytest.raises(InputError, match="constant image"):
        pio.validate(hz)


def test_small_image_reads_but_does_not_validate(tmp_path):
    s = pio.write(HeightMap(np.arange(12.0).reshape(3, 4), pixel_size=(1, 1)), tmp_path / "s.txt")
    hm = pio.read(s)
    with pytest.raises(InputError, match=r"s.txt: image too small \(4 x 3 px"):
        pio.validate(hm)


def test_sxm_channel_table_damaged(samples_dir, tmp_path):
    src = samples_dir / REAL[nanonis]
    p = _patch(src, tmp_path / "t.sxm", b"\tDirection\t", b"\tDirectiox\t")
    _raises(pio.read, p, r"lacks the DATA_INFO channel table")


def test_unexpected_reader_error_becomes_input_error(tmp_path, monkeypatch):
    """Safety net in io.read: a low-level error from a corrupt file is one InputError line."""
    p = gsf.write(tmp_path / "g.gsf", HeightMap(np.ones((8, 8), np.float32), pixel_size=(1, 1)))

    def broken(path, channel=None):
        raise struct.error("unpack requires a buffer of 8 bytes")

    monkeypatch.setattr(gsf, "read", broken)
    _raises(pio.read, p, r"corrupt Gwyddion Simple Field file \(error: unpack requires")


def test_input_error_names_the_file_or_only_the_problem():
    """One line: 'file: problem' for a file, the problem alone for an option or an array."""
    from particlesnn.errors import InputError

    assert str(InputError("data/scan.sxm", "truncated file")) == "scan.sxm: truncated file"
    assert str(InputError(None, "--presets: unknown preset 'x'")) == "--presets: unknown preset 'x'"


def test_truncated_tiff_is_one_line_in_the_terminal(tmp_path):
    """tifffile logs its own complaints; a bad TIFF must still print one line, ours."""
    import subprocess
    import sys

    tifffile = pytest.importorskip("tifffile")
    with tifffile.TiffWriter(tmp_path / "s.tif") as w:
        for k in range(3):
            w.write(np.full((256, 256), k, np.uint16), photometric="minisblack")
    (tmp_path / "cut.tif").write_bytes((tmp_path / "s.tif").read_bytes()[:3000])
    res = subprocess.run([sys.executable, "-m", "particlesnn", "info", str(tmp_path / "cut.tif")],
                         capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    lines = [ln for ln in (res.stdout + res.stderr).splitlines() if ln.strip()]
    assert res.returncode == 1 and len(lines) == 1, lines
    assert lines[0].startswith("error: cut.tif: corrupt or truncated TIFF"), lines
