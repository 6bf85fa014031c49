"""The height map: the one data type every reader returns and every stage reads."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class HeightMap:
    """A 2D scalar image with its physical scale.

    Attributes
    ----------
    data : ndarray, shape (rows, cols), float32 or float64
        Heights in ``unit`` (nm for topography). Row 0 is the top line of the image as
        displayed.
    pixel_size : (float, float) or None
        Pixel size (x, y) in nm/px. ``None`` when the scale is unknown (plain images): every
        later measure then falls back to pixels and says so.
    channel : str
        Channel name, e.g. ``"Z"``, ``"HeightRetrace"``, ``"Topography"``, ``"grey"``.
    unit : str
        Unit of ``data``: ``"nm"`` for heights, otherwise the channel's own unit
        (``"nA"``, ``"V"``, ``"deg"``), or ``"a.u."`` for plain images.
    source : Path or None
        The file it was read from.
    metadata : dict
        Raw header fields of the file, plus ``"format"`` (reader name) and ``"channels"``
        (all channel names in the file) where known.
    """

    data: np.ndarray
    pixel_size: tuple[float, float] | None = None
    channel: str = "Z"
    unit: str = "nm"
    source: Path | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data = np.asarray(self.data)
        if self.data.ndim != 2:
            raise ValueError(f"HeightMap data must be 2D, got shape {self.data.shape}")
        if not np.issubdtype(self.data.dtype, np.floating):
            self.data = self.data.astype(np.float64)
        if self.pixel_size is not None:
            px, py = (float(v) for v in self.pixel_size)
            self.pixel_size = (px, py)
        if self.source is not None:
            self.source = Path(self.source)

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) in px."""
        return self.data.shape  # type: ignore[return-value]

    @property
    def has_scale(self) -> bool:
        """True when the pixel size in nm is known."""
        return self.pixel_size is not None

    @property
    def size_nm(self) -> tuple[float, float] | None:
        """(width, height) of the scanned area in nm, or None."""
        if self.pixel_size is None:
            return None
        rows, cols = self.shape
        return cols * self.pixel_size[0], rows * self.pixel_size[1]

    @property
    def name(self) -> str:
        """Stem of the source file, or ``"image"``."""
        return self.source.stem if self.source is not None else "image"

    def with_data(self, data: np.ndarray, **changes: Any) -> "HeightMap":
        """A copy holding new data (same scale, channel and metadata unless changed)."""
        return replace(self, data=data, metadata=dict(self.metadata), **changes)
