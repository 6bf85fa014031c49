"""Parameters of the synthetic image generator, with units and the ranges the presets draw from.

Every field is a concrete value (one image). The presets (:mod:`particlesnn.synth.presets`)
draw these values at random from the documented *default ranges*; a caller may also build a
:class:`SynthParams` by hand for an exactly controlled image (tests do).

Coordinate conventions used everywhere in :mod:`particlesnn.synth`:

* pixel ``(row i, col j)`` has its centre at ``x = j``, ``y = i`` (px); ``x`` grows to the right,
  ``y`` grows downwards (row 0 is the top line, as displayed);
* orientations are angles in degrees from the +x axis towards +y, in ``[0, 180)``;
* lengths in nm unless the name says ``_px``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

MODALITIES = ("stm", "haadf", "brightfield-tem", "sem", "fluorescence", "brightfield-cells")
SHAPES = ("cap", "ellipsoid", "truncated", "power", "faceted")
TIPS = ("none", "parabolic", "sphere")


@dataclass
class SubstrateParams:
    """The support under the particles (SPM: HOPG; other modalities use ``texture_*``).

    kind : ``"hopg"`` (terraces + roughness + defects), ``"flat"`` (exactly 0 nm; tests).
    step_height_nm : height of one graphite layer step, nm. Default 0.335 (HOPG interlayer).
    n_steps : number of step edges crossing the image, 0-6.
    step_layers_max : an edge is 1..this many layers high (step bunching), 1-3.
    step_waviness : lateral meander of a step edge as a fraction of the image size, 0-0.08.
    tilt : (slope_x, slope_y) of the sample plane, nm per nm, each in -0.03..0.03. Added after
        tip convolution (a plane is unchanged by a symmetric tip up to a constant).
    roughness_rms_nm : rms of the 1/f^beta height roughness, nm, 0-0.05.
    roughness_beta : spectral exponent of the roughness power spectrum (PSD ~ 1/f^beta), 1.5-3.
    n_pits : one-layer-deep vacancy pits (round, 1-8 nm across), 0-4.
    n_point_defects : small bright point defects (0.02-0.1 nm high, 0.3-1 nm wide), 0-20.
        They are NOT particles (no label): a detector must learn to ignore them.
    lattice_nm : amplitude of the atomic graphite lattice corrugation (period 0.246 nm), nm,
        0-0.03; only visible when the pixel size is below ~0.1 nm.
    grain_nm : mean grain size of a granular film under the particles (Voronoi grains, each
        raised by its own height), nm; 0 = none (every training preset). Not particles.
    grain_rms_nm : rms of the grains' heights, nm (used when ``grain_nm`` > 0).
    """

    kind: str = "hopg"
    step_height_nm: float = 0.335
    n_steps: int = 2
    step_layers_max: int = 1
    step_waviness: float = 0.03
    tilt: tuple[float, float] = (0.0, 0.0)
    roughness_rms_nm: float = 0.02
    roughness_beta: float = 2.0
    n_pits: int = 0
    n_point_defects: int = 0
    lattice_nm: float = 0.0
    grain_nm: float = 0.0
    grain_rms_nm: float = 0.0


@dataclass
class ParticleParams:
    """The particle population.

    coverage : target fraction of the (slightly enlarged) image area covered by the particles'
        physical footprints, 0-0.4 (0 = no particles). Crowded images reach ~0.4.
    diameter_mean_nm : mean physical diameter (equivalent-circle diameter of the base ellipse),
        nm, 1-10 for SPM presets.
    diameter_cv : coefficient of variation of the log-normal diameter law, 0.05-0.5.
    diameter_min_nm, diameter_max_nm : clip of the drawn diameters, nm (default 0.6, 15).
    bimodal_fraction : fraction of particles drawn from a second population, 0-0.5.
    diameter2_mean_nm, diameter2_cv : the second population's log-normal law.
    aspect_mean, aspect_sd : height / diameter (normal law, clipped to 0.1-0.95), mean 0.2-0.8.
    shape : one of ``SHAPES`` or ``"mixed"`` (each particle draws one of
        cap / ellipsoid / truncated / power):

        * ``cap``: spherical cap of base diameter d and apex height h (a truncated sphere whose
          equator lies below the substrate; if h > d/2 it becomes ``truncated``);
        * ``truncated``: sphere of diameter d truncated by the substrate at height h (h <= d; for
          h > d/2 the overhang is invisible from above: a vertical wall);
        * ``ellipsoid``: half-ellipsoid, z = h sqrt(1 - rho^2);
        * ``power``: z = h (1 - rho^2)^p with p drawn in 0.5-1.2 (rounded to pointed profiles);
        * ``faceted``: flat-topped polygonal prism-like particle (4-8 sides), for TEM renders.

    ellipticity_max : ellipticity e = 1 - minor/major is uniform in [0, ellipticity_max], 0-0.5.
    outline_roughness : relative amplitude of random low-order outline harmonics, 0-0.15.
    cluster_fraction : probability that a particle is placed touching an already placed one
        (pairs, chains and small clusters), 0-0.8.
    min_gap : smallest centre distance allowed, as a multiple of the sum of the two base radii;
        < 1 lets neighbours overlap (agglomerates), 0.7-1.1.
    step_fraction : probability that a particle not placed in a cluster nucleates on a HOPG
        step edge (metal particles decorate steps), 0-0.6.
    n_max : hard cap on the number of particles per image (speed), default 1500.
    """

    coverage: float = 0.1
    diameter_mean_nm: float = 3.0
    diameter_cv: float = 0.25
    diameter_min_nm: float = 0.6
    diameter_max_nm: float = 15.0
    bimodal_fraction: float = 0.0
    diameter2_mean_nm: float = 6.0
    diameter2_cv: float = 0.2
    aspect_mean: float = 0.5
    aspect_sd: float = 0.1
    shape: str = "mixed"
    ellipticity_max: float = 0.3
    outline_roughness: float = 0.05
    cluster_fraction: float = 0.2
    min_gap: float = 0.9
    step_fraction: float = 0.0
    n_max: int = 1500


@dataclass
class TipParams:
    """The STM/AFM tip, applied as a grey-scale dilation of the true surface.

    shape : ``"none"``, ``"parabolic"`` (t(u) = u^2 / 2R, separable, fast) or ``"sphere"``
        (t(u) = R - sqrt(R^2 - u^2) for u <= R; exact ball, slower).
    radius_nm : apex radius R, nm, 0.5-5 (presets: also at most 30 px).
    double_offset_nm : (dx, dy) of a second apex, nm (|d| 0.5-5), or None. The double-tip
        "ghost" copies are an artefact and are never labelled.
    double_dz_nm : how much the second apex is retracted, nm, 0.05-0.5.
    """

    shape: str = "parabolic"
    radius_nm: float = 1.0
    double_offset_nm: tuple[float, float] | None = None
    double_dz_nm: float = 0.2


@dataclass
class InstrumentParams:
    """Scanning artefacts and noise, applied to the tip-dilated height (nm) in raster order.

    line_offset_nm : std of a random per-line height offset, nm, 0-0.1.
    line_tilt_nm : std of a random per-line linear slope (total change across a line), nm, 0-0.05.
    n_jumps : abrupt offset jumps (all lines below a random row are shifted), 0-3.
    jump_nm : std of a jump's size, nm, 0.05-1.
    white_noise_nm : std of white (per-pixel) noise, nm, 0-0.05.
    pink_noise_nm : std of 1/f noise in raster (time) order, nm, 0-0.05.
    feedback_lag : fraction of the previous sample retained by a slow feedback loop (first-order
        low-pass along the fast scan axis, gives trailing edges), 0-0.6.
    n_streaks : horizontal streaks (a tip change over part of a few lines), 0-10.
    streak_nm : std of the streak height, nm, 0.05-1.
    n_spikes : single-pixel / short spikes, 0-30.
    spike_nm : std of the spike height, nm, 0.3-3.
    drift_px : (x, y) linear thermal drift accumulated over the whole frame, px, each |.| <= 5 %
        of the image size (x: shear, y: stretch along the slow axis).
    creep_px : piezo creep in x at the first line, px, decaying exponentially, 0-5 % of the width.
    creep_decay : e-folding of the creep in fraction of the frame's rows, 0.05-0.3.
    """

    line_offset_nm: float = 0.0
    line_tilt_nm: float = 0.0
    n_jumps: int = 0
    jump_nm: float = 0.2
    white_noise_nm: float = 0.0
    pink_noise_nm: float = 0.0
    feedback_lag: float = 0.0
    n_streaks: int = 0
    streak_nm: float = 0.3
    n_spikes: int = 0
    spike_nm: float = 1.0
    drift_px: tuple[float, float] = (0.0, 0.0)
    creep_px: float = 0.0
    creep_decay: float = 0.1


@dataclass
class OpticsParams:
    """Rendering of the non-SPM modalities (TEM/STEM, SEM, fluorescence, bright-field cells).

    The observation is built from the particles' geometry (projected thickness, surface slope)
    and a support texture, then blurred, unevenly illuminated and noised; values are in
    arbitrary units scaled to roughly 0..1 before noise.

    support : ``"carbon"`` (fine amorphous-carbon speckle), ``"lumpy"`` (bright lumpy grains
        over dark vacuum, as in HAADF catalyst images), ``"grainy"`` (SEM), ``"none"``.
    support_fraction : fraction of the field covered by the lumpy support, 0.3-1.
    support_brightness : mean support signal relative to a mid-size particle's apex signal,
        0.1-1.2 (HAADF: the support is often as bright as small particles).
    support_grain_px : typical size of support grains / lumps, px, 3-80.
    particle_contrast : particle apex signal over the support (a.u.), 0.3-1.5.
    blur_px : Gaussian blur sigma (probe / PSF), px, 0.3-3.
    dose : mean detected counts per pixel at signal 1 (Poisson shot noise), 5-500.
    read_noise : std of additive Gaussian noise, fraction of full scale, 0-0.05.
    illumination : relative amplitude of the slow uneven illumination / gain, 0-0.4.
    defocus_fringe : amplitude of a Fresnel fringe at particle edges (bright-field TEM), 0-0.3.
    invert : render dark-on-bright (bright-field) instead of bright-on-dark, bool.
    """

    support: str = "carbon"
    support_fraction: float = 1.0
    support_brightness: float = 0.5
    support_grain_px: float = 10.0
    particle_contrast: float = 1.0
    blur_px: float = 1.0
    dose: float = 100.0
    read_noise: float = 0.01
    illumination: float = 0.1
    defocus_fringe: float = 0.0
    invert: bool = False


@dataclass
class OverlayParams:
    """Burnt-in overlays: scale bar, text, black frame, info band (labels under them are removed).

    scale_bar : draw a scale bar (length chosen to a round number of nm / um), bool.
    text : draw a short random text label (e.g. "20 nm", "HAADF 200kV", "x150k"), bool.
    frame_px : width of a black frame around the image, px, 0-20.
    info_band : height of an opaque info band along the bottom edge, fraction of rows, 0-0.12.
    """

    scale_bar: bool = False
    text: bool = False
    frame_px: int = 0
    info_band: float = 0.0


@dataclass
class SynthParams:
    """Everything that defines one synthetic image.

    modality : one of ``MODALITIES``. ``"stm"`` gives a height map (nm) as observation.
    size : (rows, cols) in px, 128-1024 (``stm-large``: 1024-1536).
    pixel_size_nm : square pixel size, nm/px. SPM presets 0.05-0.5.
    footprint_fraction : a pixel belongs to particle k's footprint where k's own height above
        the local substrate, after tip convolution, exceeds this fraction of k's apex height.
        Default 0.05 (chosen so that an isolated particle without tip has a footprint
        equivalent diameter within ~3 % of its physical diameter for every shape).
    negative : no particles at all (coverage forced to 0); the image teaches what is not a
        particle.
    """

    modality: str = "stm"
    size: tuple[int, int] = (512, 512)
    pixel_size_nm: float = 0.1
    footprint_fraction: float = 0.05
    negative: bool = False
    substrate: SubstrateParams = field(default_factory=SubstrateParams)
    particles: ParticleParams = field(default_factory=ParticleParams)
    tip: TipParams = field(default_factory=TipParams)
    instrument: InstrumentParams = field(default_factory=InstrumentParams)
    optics: OpticsParams = field(default_factory=OpticsParams)
    overlay: OverlayParams = field(default_factory=OverlayParams)
