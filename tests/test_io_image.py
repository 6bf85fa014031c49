"""Plain-image reader: greyscale depths, palette inversion, annotation masking, scale bar."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from particlesnn.errors import InputError
from particlesnn.heightmap import HeightMap
from particlesnn.io import image
from particlesnn.io.palette import palette_table

H, W = 120, 160


def smooth_map(noise: float = 0.01, seed: int = 0) -> np.ndarray:
    """A [0, 1] map: gentle ramp, four Gaussian particles, a little noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:H, :W]
    z = 0.2 * xx / W + noise * rng.standard_normal((H, W))
    for cy, cx, s in [(30, 40, 5), (70, 110, 7), (100, 135, 4), (40, 135, 6)]:
        z += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    return (z - z.min()) / (z.max() - z.min())


def render(u: np.ndarray, name: str) -> np.ndarray:
    """u in [0, 1] through a 256-entry palette, like matplotlib's cmap(u)."""
    from matplotlib import colormaps

    return (colormaps[name](u)[..., :3] * 255).round().astype(np.uint8)


def annotate(rgb: np.ndarray, colour=(255, 255, 255)) -> Image.Image:
    """A 60 px bar (drawn x 20..80 inclusive, rows 108..110) and a label, off the particles."""
    im = Image.fromarray(rgb)
    d = ImageDraw.Draw(im)
    d.rectangle([20, 108, 80, 110], fill=colour)
    d.text((30, 88), "50 nm", fill=colour, font=ImageFont.load_default(size=14))
    return im


BAR = (slice(108, 111), slice(20, 81))
LABEL = (slice(86, 107), slice(26, 80))  # box around the label


def corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


# ------------------------------------------------------------------ the shared real sample
def levelled_pto(samples_dir: Path) -> np.ndarray:
    """The map make_palette_sample.py renders: plane, row medians, 0.5-99.8 % clip, in [0, 1]."""
    gwyfile = pytest.importorskip("gwyfile")
    obj = gwyfile.load(str(samples_dir / "gwy" / "PTO_110_Virgin0001.gwy"))
    f = gwyfile.util.get_datafields(obj)["HeightRetrace"]
    z = np.asarray(f.data, float) * 1e9
    ny, nx = z.shape
    yy, xx = np.mgrid[:ny, :nx]
    a = np.c_[xx.ravel(), yy.ravel(), np.ones(z.size)]
    z = z - (a @ np.linalg.lstsq(a, z.ravel(), rcond=None)[0]).reshape(z.shape)
    z = z - np.median(z, axis=1, keepdims=True)
    lo, hi = np.percentile(z, [0.5, 99.8])
    return np.clip((z - lo) / (hi - lo), 0, 1)


def test_real_afmhot_sample_inverted_and_annotation_masked(samples_dir):
    path = samples_dir / "palette" / "PTO_110_Virgin0001_afmhot.bmp"
    if not path.is_file():
        pytest.skip("palette sample not present")
    hm = image.read(path, scale_bar=2000.0)
    md = hm.metadata
    assert md["palette"] == "afmhot" and hm.channel == "palette" and hm.unit == "a.u."
    assert hm.shape == (512, 512)
    truth = np.kron(levelled_pto(samples_dir), np.ones((2, 2)))  # the picture is upscaled 2x
    mask = md["mask"]
    assert corr(truth[~mask], hm.data[~mask]) > 0.99
    # scale bar: white, drawn by Pillow as rectangle x0..x0+102 inclusive (103 px), rows 482..485
    assert mask[482:486, 30:133].all()
    # the label "2 um" above the bar: every pure-white pixel there is masked
    rgb = np.asarray(Image.open(path))
    white = (rgb == 255).all(axis=2)
    label = (slice(460, 481), slice(66, 114))
    assert white[label].sum() > 20 and mask[label][white[label]].all()
    # white particle tops are data, not annotation: few pixels masked in all
    assert md["masked_fraction"] < 0.01
    assert (white & ~mask).sum() > 200
    # filled, not left white: the bar region now looks like the background around it
    assert hm.data[482:486, 30:133].max() < 0.5 * 255
    # pixel size from the bar: 2000 nm / 102 px = 19.61 nm/px (true: 10039.2 nm / 512 = 19.61)
    assert md["scale_bar"]["length_px"] == 102 and md["scale_bar"]["run_px"] == 103
    assert hm.pixel_size[0] == pytest.approx(10039.2 / 512, rel=0.002)
    assert md["pixel_size_source"] == "scale_bar"


# ------------------------------------------------------------------ palettes
@pytest.mark.parametrize("name", ["afmhot", "viridis", "magma", "hot", "copper", "cividis"])
def test_known_palette_detected_and_inverted(tmp_path, name):
    u = smooth_map()
    path = tmp_path / f"{name}.png"
    rgb = render(u, name)
    pic = annotate(rgb)
    pic.save(path)
    hm = image.read(path)
    assert hm.metadata["palette"] == name
    m = hm.metadata["mask"]
    assert m[BAR].all()
    # every label pixel that the text changed noticeably is masked
    changed = np.abs(np.asarray(pic, int) - rgb).sum(axis=2) > 60
    assert changed[LABEL].sum() > 30 and m[changed].all()
    assert m.mean() < 0.06
    assert corr(u[~m], hm.data[~m]) > 0.999
    # palette inversion, not grey averaging: luminance of the same picture is worse
    lum = np.asarray(Image.open(path).convert("L"), float)
    assert corr(u[~m], hm.data[~m]) > corr(u[~m], lum[~m])


def test_unknown_palette_recovered(tmp_path):
    u = smooth_map()
    path = tmp_path / "jet.png"
    annotate(render(u, "jet")).save(path)
    hm = image.read(path)
    assert hm.metadata["palette"] == "recovered"
    assert any("recovered" in w for w in hm.metadata["warnings"])
    m = hm.metadata["mask"]
    assert m[BAR].all()
    assert corr(u[~m], hm.data[~m]) > 0.99
    # jet's luminance is not monotonic: grey averaging cannot do this
    lum = np.asarray(Image.open(path).convert("L"), float)
    assert corr(u[~m], lum[~m]) < 0.9


def test_forced_palette_and_colour_channel(tmp_path):
    u = smooth_map()
    rgb = render(u, "viridis")
    path = tmp_path / "v.png"
    Image.fromarray(rgb).save(path)
    forced = image.read(path, channel="viridis")
    assert forced.metadata["palette"] == "viridis"
    assert corr(u, forced.data) > 0.999
    green = image.read(path, channel="green")
    assert green.channel == "green" and np.array_equal(green.data, rgb[..., 1].astype(float))
    with pytest.raises(InputError):
        image.read(path, channel="no-such-palette")


def test_jpeg_palette(tmp_path):
    u = smooth_map(noise=0.0)
    path = tmp_path / "v.jpg"
    annotate(render(u, "viridis")).save(path, quality=92)
    hm = image.read(path, scale_bar=300.0)
    assert hm.metadata["palette"] == "viridis"
    m = hm.metadata["mask"]
    assert m[BAR].mean() > 0.95
    assert corr(u[~m], hm.data[~m]) > 0.99
    assert hm.pixel_size[0] == pytest.approx(300.0 / 60, rel=0.05)


# ------------------------------------------------------------------ greyscale
def test_grey_8bit_with_white_bar(tmp_path):
    u = smooth_map()
    g = np.round(20 + 200 * u).astype(np.uint8)  # data 20..220
    im = annotate(np.repeat(g[..., None], 3, axis=2))  # RGB with R = G = B
    path = tmp_path / "g.png"
    im.convert("L").save(path)
    hm = image.read(path, scale_bar=500.0)
    assert hm.channel == "grey" and hm.unit == "a.u." and hm.metadata["palette"] == "grey"
    m = hm.metadata["mask"]
    assert m[BAR].all()
    a = np.asarray(Image.open(path))
    assert (a[LABEL] >= 250).sum() > 20 and m[LABEL][a[LABEL] >= 250].all()  # label cores
    outside = ~m
    outside[LABEL] = False  # anti-aliased grey text edges cannot all be told from data
    assert np.array_equal(hm.data[outside], g[outside].astype(float))  # data kept as is
    assert m.mean() < 0.05
    assert hm.pixel_size == pytest.approx((500.0 / 60, 500.0 / 60))
    # the same picture stored as RGB (R = G = B) reads as grey too
    rgbpath = tmp_path / "rgb.png"
    im.save(rgbpath)
    hm2 = image.read(rgbpath)
    assert hm2.channel == "grey" and np.array_equal(hm2.data[outside], g[outside].astype(float))


def test_grey_16bit_full_depth(tmp_path):
    u = smooth_map()
    g = np.round(1000 + 60000 * u).astype(np.uint16)
    path = tmp_path / "g16.png"
    Image.fromarray(g).save(path)
    hm = image.read(path)
    assert not hm.metadata["mask"].any()
    assert np.array_equal(hm.data, g.astype(float))
    assert hm.data.max() > 60000


def test_float_tiff_with_nan(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    z = (smooth_map() * 40.0 - 3.0).astype(np.float32)
    z[5, 7] = np.nan
    path = tmp_path / "f.tif"
    tifffile.imwrite(path, z)
    hm = image.read(path)
    assert hm.data.dtype == np.float32 and hm.pixel_size is None
    m = hm.metadata["mask"]
    assert m[5, 7] and m.sum() == 1
    assert np.isfinite(hm.data).all()
    assert np.array_equal(hm.data[~m], z[~m])
    assert any("NaN" in w for w in hm.metadata["warnings"])


def test_bmp_and_palette_mode(tmp_path):
    u = smooth_map()
    rgb = render(u, "afmhot")
    Image.fromarray(rgb).save(tmp_path / "a.bmp")
    assert image.read(tmp_path / "a.bmp").metadata["palette"] == "afmhot"
    Image.fromarray(rgb).quantize(256).save(tmp_path / "p.png")  # indexed-colour PNG
    hm = image.read(tmp_path / "p.png")
    assert hm.metadata["palette"] == "afmhot" and corr(u, hm.data) > 0.99


# ------------------------------------------------------------------ scale and writing
def test_pixel_size_argument_wins(tmp_path):
    path = tmp_path / "g.png"
    annotate(np.repeat(np.full((H, W), 60, np.uint8)[..., None], 3, axis=2)).save(path)
    hm = image.read(path, pixel_size=2.5, scale_bar=500.0)
    assert hm.pixel_size == (2.5, 2.5) and hm.metadata["pixel_size_source"] == "argument"
    assert hm.metadata["scale_bar"]["length_px"] == 60
    assert image.read(path).pixel_size is None


def test_scale_bar_asked_but_absent(tmp_path):
    path = tmp_path / "plain.png"
    Image.fromarray((smooth_map() * 255).astype(np.uint8)).save(path)
    with pytest.raises(InputError, match="scale bar"):
        image.read(path, scale_bar=100.0)


def test_write_tiff_round_trip_with_pixel_size(tmp_path):
    z = smooth_map() * 12.0
    hm = HeightMap(z, pixel_size=(2.5, 4.0), unit="nm")
    path = image.write(tmp_path / "out.tif", hm)
    back = image.read(path)
    assert back.data.dtype == np.float32
    assert np.allclose(back.data, z, atol=1e-5)
    assert back.pixel_size == pytest.approx((2.5, 4.0))
    assert back.metadata["pixel_size_source"] == "tiff"
    # without a scale, none comes back
    image.write(tmp_path / "n.tif", HeightMap(z))
    assert image.read(tmp_path / "n.tif").pixel_size is None


def test_tiff_resolution_not_in_length_unit_ignored(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    z = np.zeros((8, 8), np.float32)
    tifffile.imwrite(tmp_path / "dpi.tif", z, resolution=(72, 72))  # print resolution (inch)
    assert image.read(tmp_path / "dpi.tif").pixel_size is None
    tifffile.imwrite(tmp_path / "px.tif", z, imagej=True, resolution=(0.5, 0.5),
                     metadata={"unit": "pixel"})
    assert image.read(tmp_path / "px.tif").pixel_size is None
    tifffile.imwrite(tmp_path / "um.tif", z, imagej=True, resolution=(0.5, 0.5),
                     metadata={"unit": "um"})
    assert image.read(tmp_path / "um.tif").pixel_size == pytest.approx((2000.0, 2000.0))


def test_write_png_normalised(tmp_path):
    z = np.linspace(-5, 5, H * W).reshape(H, W)
    path = image.write(tmp_path / "o.png", HeightMap(z))
    a = np.asarray(Image.open(path))
    assert a.dtype == np.uint8 and a.min() == 0 and a.max() == 255
    assert a[0, 0] == 0 and a[-1, -1] == 255
    with pytest.raises(InputError):
        image.write(tmp_path / "o.gif", HeightMap(z))


# ------------------------------------------------------------------ bad input
def png_bytes(a: np.ndarray) -> bytes:
    b = io.BytesIO()
    Image.fromarray(a).save(b, "PNG")
    return b.getvalue()


def test_bad_input(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        image.read(tmp_path / "empty.png")
    good = png_bytes((smooth_map() * 255).astype(np.uint8))
    (tmp_path / "trunc.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(InputError, match="trunc.png"):
        image.read(tmp_path / "trunc.png")
    (tmp_path / "junk.jpg").write_bytes(b"this is not an image at all" * 10)
    with pytest.raises(InputError):
        image.read(tmp_path / "junk.jpg")
    (tmp_path / "junk.tif").write_bytes(b"II*\x00" + b"\xff" * 40)
    with pytest.raises(InputError):
        image.read(tmp_path / "junk.tif")
    # a PNG whose header says 0 x 0 px
    hdr = bytearray(png_bytes(np.zeros((1, 1), np.uint8)))
    hdr[16:24] = b"\x00" * 8  # IHDR width and height
    (tmp_path / "zero.png").write_bytes(bytes(hdr))
    with pytest.raises(InputError):
        image.read(tmp_path / "zero.png")
    with pytest.raises(InputError, match="not found"):
        image.read(tmp_path / "missing.png")


def test_palette_table_shape():
    t = palette_table("afmhot")
    assert t.shape == (256, 3) and t[0].tolist() == [0, 0, 0] and t[-1].tolist() == [255, 255, 255]


def test_colour_bar_masked(tmp_path):
    u = smooth_map()
    rgb = render(u, "viridis").copy()
    rgb[10:110, 148:156] = render(np.linspace(1, 0, 100)[:, None] * np.ones((1, 8)), "viridis")
    path = tmp_path / "cbar.png"
    Image.fromarray(rgb).save(path)
    hm = image.read(path)
    m = hm.metadata["mask"]
    assert m[10:110, 148:156].all()
    assert hm.metadata["colour_bar_px"] == 800
    assert m[:, :140].sum() == 0  # nothing else


@pytest.mark.parametrize("name", ["gray", "afmhot"])
def test_real_map_rendered_nothing_masked(samples_dir, tmp_path, name):
    """Clipped particle tops of a real map (PTO, native 256 px) are data, not annotation."""
    src = samples_dir / "wsxm" / "PTO_110_Virgin0001_HeightRetrace.txt"
    if not src.is_file():
        pytest.skip("wsxm sample not present")
    z = np.loadtxt(src, skiprows=5, delimiter="\t")
    lo, hi = np.percentile(z, [0.5, 99.8])
    u = np.clip((z - lo) / (hi - lo), 0, 1)
    path = tmp_path / "pto.png"
    Image.fromarray(render(u, name)).save(path)
    hm = image.read(path)
    assert not hm.metadata["mask"].any()
    assert corr(u, hm.data) > 0.999


@pytest.mark.parametrize("name", ["gray", "afmhot", "viridis"])
def test_scale_bar_on_black_box(tmp_path, name):
    """A white 60 px bar and label on a black box: the bar is measured, not the box."""
    u = smooth_map()
    im = Image.fromarray(render(u, name))
    d = ImageDraw.Draw(im)
    d.rectangle([14, 84, 100, 114], fill=(0, 0, 0))  # the box: 87 px wide
    d.rectangle([20, 108, 80, 110], fill=(255, 255, 255))
    d.text((30, 88), "50 nm", fill=(255, 255, 255), font=ImageFont.load_default(size=14))
    path = tmp_path / "boxed.png"
    im.save(path)
    hm = image.read(path, scale_bar=50.0)
    assert hm.metadata["scale_bar"]["length_px"] == 60
    assert hm.pixel_size == pytest.approx((50.0 / 60, 50.0 / 60))
    m = hm.metadata["mask"]
    assert m[BAR].all()
    if name == "viridis":  # black is off the viridis palette: the whole box is annotation
        assert m[84:115, 14:101].all()
    # (on gray/afmhot, black is the palette's low end and this box sits on dark data: it is
    # indistinguishable from a flat dark region and stays; the bar is still measured alone)


def _fei_header(pixel_m: float, rx: int, ry: int) -> str:
    return ("[User]\r\nDate=12/08/2026\r\n[Beam]\r\nHV=5000\r\n[Scan]\r\n"
            f"PixelWidth={pixel_m:g}\r\nPixelHeight={pixel_m:g}\r\n"
            f"[Image]\r\nResolutionX={rx}\r\nResolutionY={ry}\r\n")


def test_fei_sem_tiff_scale_and_data_bar(tmp_path):
    """An FEI / Thermo Fisher TIFF: pixel size from [Scan] PixelWidth (m), data bar cut off,
    labels from detect still in the file's frame."""
    tifffile = pytest.importorskip("tifffile")
    from particlesnn.io import in_file_frame

    img = (smooth_map() * 200).astype(np.uint8)  # 120 x 160: the scan
    bar = np.zeros((22, W), np.uint8)
    bar[5:15, 10:90] = 255  # the data bar's text and scale bar
    tifffile.imwrite(tmp_path / "fei.tif", np.vstack([img, bar]),
                     extratags=[(34682, "s", 0, _fei_header(3.125e-9, W, H), True)])
    hm = image.read(tmp_path / "fei.tif")
    assert hm.shape == (H, W)
    assert np.array_equal(hm.data, img.astype(hm.data.dtype))
    assert hm.pixel_size == pytest.approx((3.125, 3.125))
    assert hm.metadata["image"]["tiff_scale_from"] == "FEI"
    assert any("data bar" in w for w in hm.metadata["warnings"])
    back = in_file_frame(np.ones(hm.shape, np.uint16), hm)
    assert back.shape == (H + 22, W) and back[H:].max() == 0
    # an FEI header whose image size is the TIFF's: nothing cut
    tifffile.imwrite(tmp_path / "fei2.tif", img,
                     extratags=[(34682, "s", 0, _fei_header(2e-10, W, H), True)])
    hm2 = image.read(tmp_path / "fei2.tif")
    assert hm2.shape == (H, W) and hm2.pixel_size == pytest.approx((0.2, 0.2))
    assert "scanned_region" not in hm2.metadata


@pytest.mark.parametrize("text, nm", [("Image Pixel Size = 2.233 nm", 2.233),
                                      ("Image Pixel Size = 1.116 µm", 1116.0)])
def test_zeiss_sem_tiff_scale(tmp_path, text, nm):
    tifffile = pytest.importorskip("tifffile")
    tag = "\r\n".join(["0", "0", "AP_IMAGE_PIXEL_SIZE", text, "DP_DETECTOR_CHANNEL",
                       "Signal A = InLens"]).encode("latin-1")
    tifffile.imwrite(tmp_path / "z.tif", (smooth_map() * 200).astype(np.uint8),
                     extratags=[(34118, "s", 0, tag, True)])
    hm = image.read(tmp_path / "z.tif")
    assert hm.pixel_size == pytest.approx((nm, nm))
    assert hm.metadata["image"]["tiff_scale_from"] == "Zeiss"
    assert hm.metadata["pixel_size_source"] == "tiff"


def test_sem_tiff_without_usable_scale_says_so(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    tifffile.imwrite(tmp_path / "f.tif", (smooth_map() * 200).astype(np.uint8),
                     extratags=[(34682, "s", 0, "[Scan]\r\nDwelltime=1e-6\r\n", True)])
    hm = image.read(tmp_path / "f.tif")
    assert hm.pixel_size is None
    assert any("PixelWidth" in w for w in hm.metadata["warnings"])
    # the argument still wins over the microscope's scale
    tifffile.imwrite(tmp_path / "g.tif", (smooth_map() * 200).astype(np.uint8),
                     extratags=[(34682, "s", 0, _fei_header(1e-9, W, H), True)])
    assert image.read(tmp_path / "g.tif", pixel_size=0.5).pixel_size == (0.5, 0.5)


def test_tiff_stack_planes_are_channels(tmp_path):
    """A multi-page TIFF: plane 0 by default with a warning naming the others; any plane by
    number from the command line ("2" or "plane 2"); a plane that is not there is an error."""
    tifffile = pytest.importorskip("tifffile")
    from particlesnn import io as pio

    planes = np.stack([np.full((H, W), 10 * (k + 1), np.uint16) for k in range(3)])
    planes[:, 20:30, 20:30] += 5
    tifffile.imwrite(tmp_path / "s.tif", planes, photometric="minisblack")
    hm = image.read(tmp_path / "s.tif")
    assert hm.channel == "plane 0" and hm.data[0, 0] == 10
    assert hm.metadata["channels"] == ["plane 0", "plane 1", "plane 2"]
    assert any("3 planes" in w and "channel option, 1-2" in w for w in hm.metadata["warnings"])
    assert pio.list_channels(tmp_path / "s.tif") == ["plane 0", "plane 1", "plane 2"]
    for ch in ("2", "plane 2", 2):
        two = pio.read(tmp_path / "s.tif", channel=ch)
        assert two.channel == "plane 2" and two.data[0, 0] == 30
        assert not any("planes" in w for w in two.metadata.get("warnings", []))
    with pytest.raises(InputError, match="no plane 3"):
        pio.read(tmp_path / "s.tif", channel="3")
    tifffile.imwrite(tmp_path / "one.tif", planes[0])
    assert image.read(tmp_path / "one.tif", channel="0").channel == "grey"
    with pytest.raises(InputError, match="holds one image"):
        image.read(tmp_path / "one.tif", channel="1")
    # pages written one by one (a microscope's frame series), and an ImageJ stack: the same
    with tifffile.TiffWriter(tmp_path / "pages.tif") as w:
        for plane in planes:
            w.write(plane, photometric="minisblack")
    tifffile.imwrite(tmp_path / "ij.tif", planes, imagej=True)
    for name in ("pages.tif", "ij.tif"):
        first, last = image.read(tmp_path / name), image.read(tmp_path / name, channel="2")
        assert first.metadata["channels"] == ["plane 0", "plane 1", "plane 2"], name
        assert (first.data[0, 0], last.data[0, 0]) == (10, 30), name
    # an ImageJ hyperstack (times x channels): its planes in order, t0c0 t0c1 t0c2 t1c0 ...
    hyper = np.stack([np.stack([np.full((H, W), 100 * t + 10 * c, np.uint16) for c in range(3)])
                      for t in range(2)])
    tifffile.imwrite(tmp_path / "hyper.tif", hyper, imagej=True, metadata={"axes": "TCYX"})
    h0 = image.read(tmp_path / "hyper.tif")
    assert h0.shape == (H, W) and len(h0.metadata["channels"]) == 6
    assert image.read(tmp_path / "hyper.tif", channel="4").data[0, 0] == 110
    # an RGB TIFF stored plane by plane is a colour picture, not a stack
    rgb = render(smooth_map(), "viridis")
    tifffile.imwrite(tmp_path / "rgb.tif", np.moveaxis(rgb, -1, 0), photometric="rgb",
                     planarconfig="separate")
    col = image.read(tmp_path / "rgb.tif")
    assert col.metadata["palette"] == "viridis" and "tiff_planes" not in col.metadata["image"]


def _with_band(img: np.ndarray, rows: int, value=0, text=255) -> np.ndarray:
    """``img`` with its bottom ``rows`` replaced by a flat info band holding text and a bar."""
    out = img.copy()
    out[-rows:] = value
    im = Image.fromarray(out)
    d = ImageDraw.Draw(im)
    d.text((6, H - rows + 3), "EHT = 5.00 kV  WD = 4 mm", fill=text, font=ImageFont.load_default(size=11))
    d.rectangle([110, H - 6, 150, H - 4], fill=text)
    return np.asarray(im)


def test_info_band_left_out(tmp_path):
    """An SEM/TEM info band along the bottom is left out (densities per imaged area); the
    file's frame is kept for detect; a clipped substrate or a frame is not a band."""
    from particlesnn.io import in_file_frame, in_read_frame

    grey = (smooth_map() * 200 + 30).astype(np.uint8)
    Image.fromarray(_with_band(grey, 18)).save(tmp_path / "sem.png")
    hm = image.read(tmp_path / "sem.png")
    assert hm.shape == (H - 18, W)
    assert hm.metadata["image"]["info_band_rows_cropped"] == 18
    assert any("info band (18 rows" in w for w in hm.metadata["warnings"])
    assert in_file_frame(np.ones(hm.shape, np.uint16), hm).shape == (H, W)
    whole = np.arange(H * W).reshape(H, W)
    assert np.array_equal(in_read_frame(whole, hm), whole[:H - 18])
    # a false-colour picture with a white band: the same
    rgb = _with_band(render(smooth_map(), "viridis"), 14, value=255, text=0)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    assert image.read(tmp_path / "rgb.png").shape == (H - 14, W)
    # sparse particles on a substrate clipped to black: every row is mostly 0, no band edge
    clipped = np.clip((smooth_map() - 0.55) * 600, 0, 255).astype(np.uint8)
    assert (clipped == 0).mean() > 0.6
    Image.fromarray(clipped).save(tmp_path / "clipped.png")
    assert image.read(tmp_path / "clipped.png").shape == (H, W)
    # a black frame round the image: its bottom side is not a band
    framed = grey.copy()
    framed[:8], framed[-8:], framed[:, :8], framed[:, -8:] = 0, 0, 0, 0
    Image.fromarray(framed).save(tmp_path / "framed.png")
    assert image.read(tmp_path / "framed.png").shape == (H, W)


def test_info_band_on_synthetic_sem_renders():
    """Every info band the generator burns (SEM preset) is found to the row, and no other
    overlay of 40 SEM renders is taken for one."""
    from particlesnn.synth import display, generate

    found = 0
    for seed in range(7_101_000, 7_101_040):
        si = generate("sem", seed, size=160)
        grey = display.to_uint8(si.image)
        band = si.params.overlay.info_band
        want = int(round(band * 160)) if round(band * 160) >= 4 else 0
        assert image.info_band_rows(grey) == want, (seed, band)
        found += want > 0
    assert found >= 3


def test_jeol_and_hitachi_sidecar_scale(tmp_path):
    """JEOL and Hitachi SEMs save the scale in S.txt beside S.tif: read it (the JEOL bar in
    px of $CM_FULL_SIZE's width, its data bar below that size left out); a WSxM matrix or a
    note beside a picture is no scale."""
    rng = np.random.default_rng(0)
    pic = (rng.random((200, 240)) * 200).astype(np.uint8)
    pic[180:] = 0  # JEOL's data bar: 240 x 180 is the image
    Image.fromarray(pic).save(tmp_path / "j.tif")
    (tmp_path / "j.txt").write_text("$CM_FORMAT JEOL/SEM\n$CM_VERSION 1.0\n$CM_FULL_SIZE 1280 960\n"
                                    "$$SM_MICRON_BAR 160\n$$SM_MICRON_MARKER 200nm\n")
    hm = image.read(tmp_path / "j.tif")
    assert hm.shape == (180, 240)
    assert hm.pixel_size == pytest.approx((200 / 160 * 1280 / 240,) * 2)
    assert hm.metadata["pixel_size_source"] == "sidecar"
    assert hm.metadata["image"]["sidecar"]["from"] == "JEOL"
    assert any("JEOL data bar (20 rows" in w for w in hm.metadata["warnings"])
    Image.fromarray(pic[:180]).save(tmp_path / "h.png")
    (tmp_path / "h.txt").write_bytes(b"[SemImageFile]\r\nInstructName=S-4800\r\nPixelSize=4.96094\r\n\x00\x00")
    h = image.read(tmp_path / "h.png")
    assert h.pixel_size == pytest.approx((4.96094, 4.96094)) and h.shape == (180, 240)
    assert h.metadata["image"]["sidecar"]["from"] == "Hitachi"
    # the argument and the file's own scale come first
    assert image.read(tmp_path / "h.png", pixel_size=2.0).pixel_size == (2.0, 2.0)
    # a synth folder: S.png beside the WSxM matrix S.txt; a note beside a picture
    from particlesnn import io as pio

    pio.write(HeightMap(smooth_map(), pixel_size=(0.5, 0.5), unit="nm"), tmp_path / "s.txt")
    Image.fromarray(pic).save(tmp_path / "s.png")
    Image.fromarray(pic).save(tmp_path / "n.png")
    (tmp_path / "n.txt").write_text("PixelSize = large\nsample 3\n")
    for name in ("s.png", "n.png"):
        other = image.read(tmp_path / name)
        assert other.pixel_size is None and "sidecar" not in other.metadata["image"], name


def test_digitalmicrograph_tiff_scale(tmp_path):
    """A TIFF saved by Gatan DigitalMicrograph keeps its calibration in private tags: scale
    (65010 x, 65009 y) in the units of 65004 / 65003."""
    tifffile = pytest.importorskip("tifffile")
    img = (smooth_map() * 3000).astype(np.uint16)
    tifffile.imwrite(tmp_path / "dm.tif", img, extratags=[
        (65003, "s", 0, "nm", True), (65004, "s", 0, "nm", True),
        (65009, "d", 1, 0.0625, True), (65010, "d", 1, 0.0625, True)])
    hm = image.read(tmp_path / "dm.tif")
    assert hm.pixel_size == pytest.approx((0.0625, 0.0625))
    assert hm.metadata["image"]["tiff_scale_from"] == "DigitalMicrograph"
    tifffile.imwrite(tmp_path / "um.tif", img, extratags=[
        (65003, "s", 0, "µm".encode("latin-1"), True), (65004, "s", 0, "µm".encode("latin-1"), True),
        (65009, "f", 1, 0.002, True), (65010, "f", 1, 0.002, True)])
    assert image.read(tmp_path / "um.tif").pixel_size == pytest.approx((2.0, 2.0), rel=1e-6)
    tifffile.imwrite(tmp_path / "rec.tif", img, extratags=[
        (65003, "s", 0, "1/nm", True), (65004, "s", 0, "1/nm", True),  # a diffraction pattern
        (65009, "d", 1, 0.01, True), (65010, "d", 1, 0.01, True)])
    rec = image.read(tmp_path / "rec.tif")
    assert rec.pixel_size is None and any("not a length" in w for w in rec.metadata["warnings"])
