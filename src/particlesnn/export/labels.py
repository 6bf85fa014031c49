"""Label images as uint16 TIFF and per-particle scores as text.

* ``write_labels(path, labels)`` / ``read_labels(path)``: 2D label image, 0 = background,
  k = particle k, stored as a single-page uint16 TIFF (zlib-compressed) that ImageJ/Fiji,
  napari, QuPath and tifffile open directly. Up to 65535 particles.
* ``write_scores(path, scores)`` / ``read_scores(path)``: plain text, one ``label score`` pair
  per line (header lines start with ``#``).

``write``/``read`` are aliases of ``write_labels``/``read_labels``.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from particlesnn.errors import InputError
from particlesnn.export._common import check_labels

__all__ = ["write_labels", "read_labels", "write_scores", "read_scores", "write", "read"]

MAX_LABEL = 65535


def write_labels(path: str | Path, labels: np.ndarray) -> Path:
    """Write a label image as a uint16 TIFF.

    Parameters
    ----------
    path : file to write (``.tif``/``.tiff``; parent folders are created).
    labels : (rows, cols) integer array, 0 = background, 1..n particles.

    Returns the path written. Raises :class:`InputError` for a non-2D or non-integer array,
    negative labels, or labels above 65535 (uint16 cannot hold them: split the image or
    export polygons instead).
    """
    path = Path(path)
    lab = check_labels(labels, path)
    hi = int(lab.max())
    if hi > MAX_LABEL:
        raise InputError(
            path,
            f"too many particles for a uint16 label TIFF: largest label {hi} > {MAX_LABEL}; "
            "split the image into tiles or export polygons (COCO/LabelMe) instead",
        )
    import tifffile

    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(
        path,
        lab.astype(np.uint16),
        compression="zlib",
        photometric="minisblack",
        metadata={"axes": "YX"},
        software="particlesnn",
    )
    return path


def read_labels(path: str | Path) -> np.ndarray:
    """Read a label image written by :func:`write_labels` (or any 2D integer TIFF).

    Returns a (rows, cols) int32 array. Raises :class:`InputError` when the file is missing,
    not a TIFF, not 2D (a singleton leading axis is accepted), or not integer-valued.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    import tifffile

    try:
        arr = tifffile.imread(path)
    except Exception as exc:  # tifffile raises several kinds for broken files
        raise InputError(path, f"cannot read as TIFF ({exc.__class__.__name__}: {exc})") from exc
    arr = np.asarray(arr)
    while arr.ndim > 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2 or arr.size == 0:
        raise InputError(path, f"label TIFF must hold one 2D image, got shape {arr.shape}")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise InputError(path, "label TIFF holds non-integer values")
    elif arr.dtype.kind not in "iub":
        raise InputError(path, f"label TIFF must hold integers, got dtype {arr.dtype}")
    if arr.min() < 0:
        raise InputError(path, "label TIFF has negative labels")
    return arr.astype(np.int32)


def write_scores(path: str | Path, scores: np.ndarray | Mapping[int, float]) -> Path:
    """Write per-particle confidence scores as text, one ``label score`` per line.

    ``scores`` is either an array whose index k-1 holds the score of particle k (as
    :class:`particlesnn.segment.Segmentation.scores`) or a dict ``{label: score}``. Scores are
    written with 6 significant digits; NaN entries (unknown) are skipped.
    """
    path = Path(path)
    if isinstance(scores, Mapping):
        pairs = sorted((int(k), float(v)) for k, v in scores.items())
    else:
        arr = np.asarray(scores, dtype=float).ravel()
        pairs = [(i + 1, float(v)) for i, v in enumerate(arr)]
    if any(k <= 0 for k, _ in pairs):
        raise InputError(path, "score labels must be positive integers")
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["# label score"] + [f"{k} {v:.6g}" for k, v in pairs if np.isfinite(v)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def read_scores(path: str | Path) -> np.ndarray:
    """Read a scores file written by :func:`write_scores`.

    Returns an (n,) float array, n = largest label, index k-1 = score of particle k; labels
    absent from the file get NaN. Blank lines and lines starting with ``#`` are ignored.
    Raises :class:`InputError` for a missing file, a malformed line or a repeated label.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    found: dict[int, float] = {}
    for no, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        parts = s.replace(",", " ").replace("\t", " ").split()
        try:
            if len(parts) != 2:
                raise ValueError
            k, v = int(parts[0]), float(parts[1])
        except ValueError:
            raise InputError(path, f"line {no}: expected 'label score', got {s[:60]!r}") from None
        if k <= 0:
            raise InputError(path, f"line {no}: label must be a positive integer, got {k}")
        if k in found:
            raise InputError(path, f"line {no}: label {k} appears twice")
        found[k] = v
    n = max(found) if found else 0
    out = np.full(n, np.nan)
    for k, v in found.items():
        out[k - 1] = v
    return out


write = write_labels
read = read_labels
