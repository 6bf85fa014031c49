"""`particlesnn info` and `particlesnn convert` through typer's CliRunner."""
from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from particlesnn import HeightMap
from particlesnn import io as pio

try:
    from particlesnn.cli import app
except Exception:  # another command module half-written: test ours through its own module
    from particlesnn.cli._app import app
    import particlesnn.cli.io_cmds  # noqa: F401  (registers info/convert)

runner = CliRunner()


def _hm(rows=16, cols=20):
    rng = np.random.default_rng(1)
    return HeightMap(rng.normal(size=(rows, cols)).astype(np.float32) * 2 + 10, pixel_size=(2.5, 2.5),
                     channel="Topography", unit="nm")


def test_info_table(tmp_path):
    p = pio.write(_hm(), tmp_path / "a.gsf")
    res = runner.invoke(app, ["info", str(p)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    out = res.output
    for text in ("a.gsf", "Gwyddion Simple Field", "Topography", "20 x 16", "50 x 40", "2.5", " nm"):
        assert text in out, text


def test_piped_output_keeps_whole_values(tmp_path):
    """Output to a file or a pipe (no terminal, no COLUMNS) is not cut to 80 columns: rich
    would otherwise ellipsize the values and drop whole columns of the tables."""
    hm = _hm(rows=12, cols=900)
    hm.channel = "Topography_forward"
    p = pio.write(hm, tmp_path / "sample_0001_topography.gsf")
    res = runner.invoke(app, ["info", str(p)], env={"COLUMNS": None})
    assert res.exit_code == 0, res.output
    rng = f"{hm.data.min():.5g} .. {hm.data.max():.5g} nm"
    for text in (p.name, "Gwyddion Simple Field", hm.channel, "900 x 12", "2250 x 30", rng):
        assert text in res.output, (text, res.output)
    assert "…" not in res.output
    from particlesnn.cli._app import PIPE_WIDTH, make_console

    assert make_console().width == PIPE_WIDTH  # pytest captures the output: not a terminal


def test_info_unreadable_and_constant(tmp_path):
    good = pio.write(_hm(), tmp_path / "good.txt")
    const = pio.write(HeightMap(np.full((10, 10), 3.0), pixel_size=(1, 1)), tmp_path / "flat.txt")
    bad = tmp_path / "bad.sxm"
    bad.write_text("no scan here\n")
    res = runner.invoke(app, ["info", str(good), str(const), str(bad)], env={"COLUMNS": "200"})
    assert res.exit_code == 1
    out = res.output
    assert "good.txt" in out and "WSxM ASCII matrix" in out
    assert "constant image" in out
    assert "error: bad.sxm: unknown or unsupported format" in out
    assert "Traceback" not in out


def test_info_expands_folders(tmp_path):
    d = tmp_path / "scans"
    (d / "day2").mkdir(parents=True)
    pio.write(_hm(), d / "one.gsf")
    pio.write(_hm(), d / "day2" / "two.txt")
    res = runner.invoke(app, ["info", str(d)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "one.gsf" in res.output and "two.txt" in res.output
    (tmp_path / "empty").mkdir()
    res = runner.invoke(app, ["info", str(tmp_path / "empty")], env={"COLUMNS": "200"})
    assert res.exit_code == 1
    assert res.output.strip().endswith("empty: no files of a supported format")
    assert len(res.output.strip().splitlines()) == 1


@pytest.mark.parametrize("cmd", [["info"], ["convert", "--to", "gsf"],
                                 ["detect", "--method", "threshold", "--out", "{tmp}/out"]])
def test_single_unreadable_file_is_one_line(tmp_path, cmd):
    bad = tmp_path / "a_file_name_long_enough_that_80_columns_would_wrap_its_error.sxm"
    bad.write_text("no scan here\n")
    cmd = [c.replace("{tmp}", str(tmp_path)) for c in cmd]
    res = runner.invoke(app, [*cmd, str(bad)], env={"COLUMNS": "80"})
    assert res.exit_code == 1  # the command ran, an input could not be processed
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {bad.name}: "), res.output


def test_info_real_samples(samples_dir):
    files = [str(samples_dir / r) for r in (
        "sxm/pySPM_test.sxm", "gwy/PTO_110_Virgin0001.gwy", "nid/circles.nid", "mdt/test_mdt.mdt")]
    res = runner.invoke(app, ["info", *files], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    for text in ("Nanonis SXM", "5000 x 5000", "Z_fwd", "HeightRetrace", "Topography_fwd", "nA", "1F:Iprobe"):
        assert text in res.output, text


@pytest.mark.parametrize("to, ext", [("gsf", ".gsf"), ("txt", ".txt")])
def test_convert_round_trip(tmp_path, to, ext):
    src = pio.write(_hm(), tmp_path / "in.gsf")
    out = tmp_path / "out"
    res = runner.invoke(app, ["convert", str(src), "--to", to, "--out", str(out)])
    assert res.exit_code == 0, res.output
    written = out / f"in{ext}"
    back = pio.read(written)
    assert np.array_equal(back.data.astype(np.float32), _hm().data)
    assert back.pixel_size == pytest.approx((2.5, 2.5))


def test_convert_channel_and_errors(tmp_path, samples_dir):
    src = samples_dir / "sxm/STM_Au-111_Flat.sxm"
    res = runner.invoke(app, ["convert", str(src), "--to", "gsf", "--out", str(tmp_path), "--channel", "Current"])
    assert res.exit_code == 0, res.output
    hm = pio.read(tmp_path / "STM_Au-111_Flat_Current_fwd.gsf")
    assert hm.unit == "nA" and hm.shape == (256, 256)
    bad = runner.invoke(app, ["convert", str(src), "--to", "gsf", "--out", str(tmp_path), "--channel", "Phase"])
    assert bad.exit_code == 1  # this file could not be converted
    assert "STM_Au-111_Flat.sxm: no channel 'Phase'" in bad.output
    fmt = runner.invoke(app, ["convert", str(src), "--to", "bmp", "--out", str(tmp_path)])
    assert fmt.exit_code == 2 and "cannot convert to 'bmp'" in fmt.output


def test_convert_a_folder(tmp_path):
    """A folder stands for its files, as for info and analyze; the same scan name in two
    folders converted into one --out folder gives two files."""
    for d in ("fresh", "annealed"):
        (tmp_path / "in" / d).mkdir(parents=True)
        pio.write(_hm(), tmp_path / "in" / d / "scan1.gsf")
    res = runner.invoke(app, ["convert", str(tmp_path / "in"), "--to", "txt", "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["annealed_scan1.txt", "fresh_scan1.txt"]
    (tmp_path / "empty").mkdir()
    res = runner.invoke(app, ["convert", str(tmp_path / "empty"), "--to", "txt"])
    assert res.exit_code == 2 and "no files of a supported format" in res.output


def test_convert_refuses_to_overwrite_input(tmp_path):
    src = pio.write(_hm(), tmp_path / "x.txt")
    before = src.read_bytes()
    res = runner.invoke(app, ["convert", str(src), "--to", "txt"])
    assert res.exit_code == 1 and "would overwrite the input" in res.output
    assert src.read_bytes() == before


def test_info_says_where_an_image_scale_came_from(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    z = (np.random.default_rng(0).random((32, 40)) * 200).astype(np.uint8)
    tifffile.imwrite(tmp_path / "sem.tif", z, extratags=[
        (34682, "s", 0, "[Scan]\r\nPixelWidth=2.5e-09\r\nPixelHeight=2.5e-09\r\n", True)])
    tifffile.imwrite(tmp_path / "fiji.tif", z, imagej=True, resolution=(0.4, 0.4),
                     metadata={"unit": "nm"})
    res = runner.invoke(app, ["info", str(tmp_path / "sem.tif"), str(tmp_path / "fiji.tif")],
                        env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    assert "scale from the FEI TIFF metadata" in res.output
    assert "scale from the ImageJ TIFF metadata" in res.output
    assert "100 x 80" in res.output  # 40 x 32 px at 2.5 nm/px
