"""particlesnn: find, outline and measure nanoparticles in scanning probe microscope images.

The chain: instrument file -> :class:`HeightMap` (nm) -> levelling -> instance segmentation
(label image) -> refinement -> per-particle measures -> statistics, plots and exports.
"""
from particlesnn.heightmap import HeightMap
from particlesnn.errors import InputError

__all__ = ["HeightMap", "InputError", "__version__"]
__version__ = "0.1.0"
