"""Gallery pictures for ``docs/synthetic.md``: presets next to real images, to judge realism.

    PYTHONPATH=src python -m particlesnn.synth.gallery docs/img [../shared]

Writes ``synth_stm.png`` (STM presets, with their label outlines), ``synth_other.png``
(a row of four plain 512 px HAADF draws, then TEM/SEM/fluorescence/negatives with outlines) and ``synth_real.png`` (real files from ``../shared``,
plane- and line-levelled, same display). Pictures are palette-quantised to stay small.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from particlesnn.synth import display
from particlesnn.synth.generate import generate


def level(z: np.ndarray) -> np.ndarray:
    """Plane fit removal then per-line median removal (what a user does before looking)."""
    z = np.asarray(z, dtype=np.float64)
    rows, cols = z.shape
    yy, xx = np.mgrid[0:rows, 0:cols]
    a = np.c_[np.ones(z.size), xx.ravel(), yy.ravel()]
    coef = np.linalg.lstsq(a, z.ravel(), rcond=None)[0]
    z = z - (a @ coef).reshape(z.shape)
    return z - np.median(z, axis=1, keepdims=True)


def tile(image: np.ndarray, size: int, palette: str = "gray", spm: bool = False,
         labels: np.ndarray | None = None) -> np.ndarray:
    """(size, size, 3) uint8 display tile: levelled (SPM) or stretched, palette, optional
    green label outlines; the image is cropped to a square and resized."""
    import cv2
    from skimage.segmentation import find_boundaries

    z = level(image) if spm else np.asarray(image, dtype=np.float64)
    rows, cols = z.shape
    s = min(rows, cols)
    z = z[:s, :s]
    g = display.to_uint8(z, 0.5 if spm else 0.1)
    rgb = display.apply_palette(g, palette)
    rgb = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA)
    if labels is not None:
        lab = cv2.resize(labels[:s, :s].astype(np.int32), (size, size),
                         interpolation=cv2.INTER_NEAREST)
        rgb[find_boundaries(lab, mode="inner")] = (0, 255, 0)
    return rgb


def grid(tiles: list[np.ndarray], ncols: int, gap: int = 3) -> np.ndarray:
    """Tiles (same size) in rows of ``ncols``, white gaps."""
    h, w = tiles[0].shape[:2]
    nrows = (len(tiles) + ncols - 1) // ncols
    out = np.full((nrows * (h + gap) - gap, ncols * (w + gap) - gap, 3), 255, np.uint8)
    for k, t in enumerate(tiles):
        r, c = divmod(k, ncols)
        out[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = t
    return out


def save_small(rgb: np.ndarray, path: Path, colours: int = 64) -> Path:
    """Save as an adaptive-palette PNG (small files)."""
    from PIL import Image

    # quantise the picture without the pure-green outlines, then give green its own entry
    green = np.all(rgb == (0, 255, 0), axis=2)
    q = Image.fromarray(rgb).quantize(colours - 1, method=Image.Quantize.MEDIANCUT)
    idx = np.array(q)
    idx[green] = colours - 1
    pal = q.getpalette()[: 3 * (colours - 1)] + [0, 255, 0]
    out = Image.fromarray(idx.astype(np.uint8), mode="P")
    out.putpalette(pal)
    out.save(path, optimize=True)
    return path


def preset_tiles(names: list[str], seed: int = 1, size: int = 256, tile_px: int = 200,
                 outlines: bool = True) -> list[np.ndarray]:
    """Image tile and outlined tile for each preset name."""
    out = []
    for name in names:
        si = _representative(name, seed, size)
        spm = si.modality == "stm"
        pal = "afmhot" if spm else "gray"
        out.append(tile(si.image, tile_px, pal, spm))
        if outlines:
            out.append(tile(si.image, tile_px, pal, spm, si.labels))
    return out


def _representative(name: str, seed: int, size: int):
    """First draw from ``seed`` on that shows the preset's typical case (HAADF: lumpy support
    with >= 8 particles; negatives: a textured support; others: >= 3 particles)."""
    for s in range(seed, seed + 40):
        si = generate(name, s, size=size)
        o = si.params.optics
        if name == "haadf" and (o.support != "lumpy" or si.count < 8 or o.support_fraction > 0.9):
            continue
        if name == "negatives" and si.modality not in ("haadf", "sem", "stm"):
            continue
        if name not in ("negatives",) and si.count < 3:
            continue
        return si
    return generate(name, seed, size=size)


def real_tiles(shared: Path, tile_px: int = 200) -> list[np.ndarray]:
    """Display tiles of a few real files under ``shared`` (skips missing ones)."""
    from PIL import Image

    from particlesnn import io as pio

    out = []
    spm = [("samples/gwy/PTO_110_Virgin0001.gwy", None), ("samples/sxm/pySPM_test.sxm", None),
           ("samples/nanoscope/full_multiple_images.001", None),
           ("samples/sxm/STM_Au-111_Flat.sxm", None)]
    for rel, ch in spm:
        p = shared / rel
        if p.is_file():
            try:
                hm = pio.read(p, ch)
            except Exception:  # a reader still being written must not stop the gallery
                continue
            out.append(tile(hm.data, tile_px, "afmhot", True))
    for rel in ("real/stem-dev/images/Pd1.jpg", "real/stem-dev/images/Cu_silica1.jpg",
                "real/stem-dev/images/Ru2.jpg", "real/stem-dev/images/Pd_silica2.jpg"):
        p = shared / rel
        if p.is_file():
            out.append(tile(np.asarray(Image.open(p).convert("L"), np.float64), tile_px))
    nuc = shared / "real/nuclei-dev"
    if (nuc / "index.csv").is_file():
        import pandas as pd

        idx = pd.read_csv(nuc / "index.csv")
        for bg, k in (("dark", 2), ("bright", 1)):
            for i in idx[idx.background == bg].id.tolist()[:k]:
                p = nuc / "images" / f"{i}.png"
                out.append(tile(np.asarray(Image.open(p).convert("L"), np.float64), tile_px))
    return out


def main(argv: list[str] | None = None) -> None:
    """Write the three gallery PNGs into the folder argv[0] (real files from argv[1])."""
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0] if argv else "docs/img")
    shared = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parents[4] / "shared"
    out.mkdir(parents=True, exist_ok=True)
    stm = ["stm-sparse", "stm-crowded", "stm-tiny", "stm-noisy-lines", "stm-mixed", "stm-large"]
    save_small(grid(preset_tiles(stm), 4), out / "synth_stm.png", 128)
    other = ["haadf", "brightfield-tem", "sem", "fluorescence", "brightfield-cells", "negatives"]
    haadf = [tile(generate("haadf", s, size=512).image, 200) for s in range(4)]
    save_small(grid(haadf + preset_tiles(other), 4), out / "synth_other.png", 96)
    tiles = real_tiles(shared)
    if tiles:
        save_small(grid(tiles, 4), out / "synth_real.png", 128)
    for f in sorted(out.glob("synth_*.png")):
        print(f, f.stat().st_size // 1024, "kB")


if __name__ == "__main__":
    main()
