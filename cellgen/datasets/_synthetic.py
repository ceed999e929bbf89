"""Synthetic cells whose structure placement is known by construction.

The Statistical Cell asks how much each structure's location is set by the cell
membrane and by the nucleus. Real data never reveals the answer, so this module
draws cartoon cells in which each structure is placed by a rule that reads the
membrane, the nucleus, both or neither; :func:`structure_ground_truth` states
the rules as numbers to check a fitted model's coupling estimates against.

``STRUCTURES`` is the tuple of structure names :func:`make_cells` can draw.
"""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter
from sklearn.utils import check_random_state

from ..utils._validation import check_n_samples

__all__ = ["make_cells", "structure_ground_truth", "STRUCTURES"]

STRUCTURES = (
    "nuclear_envelope", "nucleoli", "cell_periphery", "edge_dots",
    "cytoplasmic_puncta", "control_blank", "control_dna", "control_membrane",
    "control_noise", "control_random",
)
# Structures with a placement rule of their own; control_random borrows one.
_RENDERED = STRUCTURES[:5]
# (membrane, nucleus) coupling in interphase, in mitosis: see structure_ground_truth
_COUPLING = {
    "nuclear_envelope": ((0.0, 1.0), (0.3, 0.0)),
    "nucleoli": ((0.0, 1.0), (0.2, 0.0)),
    "cell_periphery": ((1.0, 0.0),) * 2,
    "edge_dots": ((0.8, 0.0),) * 2,
    "cytoplasmic_puncta": ((0.2, 0.2),) * 2,
    "control_blank": ((0.0, 0.0),) * 2,
    "control_dna": ((0.0, 1.0),) * 2,
    "control_membrane": ((1.0, 0.0),) * 2,
    "control_noise": ((0.5, 0.5),) * 2,
    "control_random": ((0.0, 0.0),) * 2,
}
_PHASES = ("interphase", "mitosis")
_DEFAULT_SHAPE = {2: (64, 64), 3: (24, 64, 64)}
_CHUNK_VOXELS = 2**21  # bounds every temporary field to about 8 MB of float32


def structure_ground_truth() -> pd.DataFrame:
    """Return how strongly each structure's placement follows each reference channel.

    The numbers describe the renderer of :func:`make_cells`, not biology:

    * ``nuclear_envelope``: interphase ``(0, 1)``, a shell on the nucleus
      boundary; mitosis ``(0.3, 0)``, dissolved into a faint haze filling the
      cell, bounded only by the cell outline.
    * ``nucleoli``: interphase ``(0, 1)``, blobs inside the nucleus (at random
      within it, but bounded by it alone); mitosis ``(0.2, 0)``, faint puncta
      scattered uniformly through the cell.
    * ``cell_periphery`` ``(1, 0)``: a band at a fixed depth inside the cell
      boundary, fully set by the membrane.
    * ``edge_dots`` ``(0.8, 0)``: dots on the cell boundary at random positions
      along it; the membrane fixes the curve, not where on it.
    * ``cytoplasmic_puncta`` ``(0.2, 0.2)``: uniform in the cytoplasm; the
      membrane and the nucleus only bound the region, weakly and equally.
    * Controls: ``control_blank`` ``(0, 0)``; ``control_dna`` ``(0, 1)`` and
      ``control_membrane`` ``(1, 0)`` are exact copies; ``control_noise``
      ``(0.5, 0.5)`` is noise whose support is the cell (membrane) and whose
      mean is higher in the nucleus; ``control_random`` ``(0, 0)`` is a
      structure placed in another, independently drawn cell.

    Structures without a phase-specific rule have the same row in both phases.

    Returns
    -------
    ground_truth : pandas.DataFrame
        One row per (structure, cell_cycle_phase), 20 rows, with columns
        ``structure``, ``cell_cycle_phase``, ``membrane_coupling`` and
        ``nucleus_coupling`` (in [0, 1]), ``differential_coupling`` equal to
        ``(m - n) / (m + n)`` (0 when both are 0) and ``depends_on``, one of
        ``'membrane'``, ``'nucleus'``, ``'both'`` or ``'neither'``.

    Examples
    --------
    >>> from cellgen.datasets import structure_ground_truth
    >>> gt = structure_ground_truth()
    >>> gt.shape
    (20, 6)
    >>> row = gt[(gt.structure == "nucleoli") & (gt.cell_cycle_phase == "mitosis")]
    >>> row[["differential_coupling", "depends_on"]].values.tolist()
    [[1.0, 'membrane']]
    """
    rows = []
    for name in STRUCTURES:
        for phase, (m, n) in zip(_PHASES, _COUPLING[name], strict=True):
            diff = 0.0 if m + n == 0 else (m - n) / (m + n)
            dep = ["neither", "nucleus", "membrane", "both"][2 * (m > 0) + (n > 0)]
            rows.append((name, phase, m, n, diff, dep))
    columns = ["structure", "cell_cycle_phase", "membrane_coupling",
               "nucleus_coupling", "differential_coupling", "depends_on"]
    return pd.DataFrame(rows, columns=columns)


def _check_args(n_samples, ndim, shape, structures, fraction, noise, random_state):
    n_samples = check_n_samples(n_samples)
    if isinstance(ndim, bool) or not isinstance(ndim, numbers.Integral):
        raise TypeError(f"ndim must be the integer 2 or 3, got {ndim!r}.")
    if ndim not in (2, 3):
        raise ValueError(f"ndim must be 2 or 3, got {ndim}.")
    shape = _DEFAULT_SHAPE[ndim] if shape is None else shape
    if isinstance(shape, (str, bytes)) or not hasattr(shape, "__len__") or any(
            isinstance(s, bool) or not isinstance(s, numbers.Integral) for s in shape):
        raise TypeError(f"shape must be a tuple of {ndim} integers, got {shape!r}.")
    if len(shape) != ndim:
        raise ValueError(f"shape must have {ndim} axes for ndim={ndim}, got {shape}.")
    if min(shape) < 8:
        raise ValueError(f"every axis of shape must be at least 8, got {shape}.")
    if ndim == 3 and shape[0] < 0.15 * min(shape[1:]):
        # The cell's margins along Z follow the in-plane size: thinner stacks leave
        # cells of no recorded volume.
        raise ValueError(f"Z must be at least 0.15 times the smaller of Y and X (here "
                         f"{int(np.ceil(0.15 * min(shape[1:])))}); got shape {shape}.")
    structures = STRUCTURES if structures is None else structures
    structures = (structures,) if isinstance(structures, str) else structures
    if isinstance(structures, (set, frozenset)):
        # A set's order changes with the interpreter's hash seed; the labels must not.
        structures = sorted(structures, key=str)
    try:
        structures = tuple(dict.fromkeys(structures))  # dedupe, keep order
    except TypeError as exc:
        raise TypeError(f"structures must be a list of names: {exc}") from exc
    unknown = [s for s in structures if s not in STRUCTURES]
    if unknown or not structures:
        raise ValueError(f"structures must be a non-empty list of known structures; "
                         f"unknown: {unknown}. Known: {list(STRUCTURES)}.")
    for name, val in (("mitosis_fraction", fraction), ("noise", noise)):
        if isinstance(val, bool) or not isinstance(val, numbers.Real):
            raise TypeError(f"{name} must be a real number, got {val!r}.")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"mitosis_fraction must lie in [0, 1], got {fraction}.")
    if not 0.0 <= noise < np.inf:
        raise ValueError(f"noise must be a finite number >= 0, got {noise}.")
    if not isinstance(random_state, np.random.Generator):
        # A Generator seeded from the RandomState keeps sklearn's seed semantics
        # (same int, same cells) and gives fast float32 normal draws.
        try:
            seed = check_random_state(random_state).randint(0, 2**31 - 1, size=4)
        except ValueError as exc:
            raise ValueError(f"random_state is invalid: {exc}") from exc
        random_state = np.random.default_rng(seed)
    return n_samples, tuple(int(s) for s in shape), structures, random_state


def _soft(x, width):
    """Smooth step from 0 (x << 0) to 1 (x >> 0) over about ``width`` pixels."""
    return 0.5 + 0.5 * np.tanh(x / (2.0 * width))


def _to_image(local, theta):
    """Rotate cell-frame offsets (..., [major, minor(, z)]) to array-axis order."""
    c, s = np.cos(theta), np.sin(theta)
    u, v = local[..., 0], local[..., 1]
    yx = [u * s + v * c, u * c - v * s]
    return np.stack(([local[..., 2]] if local.shape[-1] == 3 else []) + yx, axis=-1)


def _to_local(rel, theta):
    """Rotate offsets listed per array axis ([z,] y, x) to [major, minor(, z)]."""
    c, s = np.cos(theta), np.sin(theta)
    return [rel[-1] * c + rel[-2] * s, rel[-2] * c - rel[-1] * s] + list(rel[:-2])


def _signed_distance(shape, geom, prefix=""):
    """Approximate signed distance (pixels) to the cell or nucleus boundary.

    Inside, the first-order estimate ``f / |grad f|`` with ``f = rho - 1``:
    exact in sign and accurate near the boundary, which is all the soft edges
    need. Coordinates stay broadcast over the other axes to save memory.
    """
    center, theta, axes = (geom[prefix + k].astype(np.float32)
                           for k in ("center", "theta", "axes"))
    n, ndim = center.shape
    col = (n,) + (1,) * ndim
    rel = [np.arange(size, dtype=np.float32).reshape((1,) + tuple(
        size if j == i else 1 for j in range(ndim))) - center[:, i].reshape(col)
           for i, size in enumerate(shape)]
    local = _to_local(rel, theta.reshape(col))
    sq = [(c * c, axes[:, i].reshape(col) ** 2) for i, c in enumerate(local)]
    q, g2 = sum(c2 / a2 for c2, a2 in sq), sum(c2 / a2**2 for c2, a2 in sq)
    amin2 = np.minimum.reduce([a2 for _, a2 in sq])  # sets the value at the centre
    inside = (np.sqrt(q) - 1.0) * np.sqrt((q + 1e-6) / (g2 + 1e-6 / amin2))
    # Outside, that is far too short beside a thin axis. The closest boundary
    # point is c * a2 / (a2 + lam) where s(lam) = 1; Newton on the concave
    # s ** -0.5 - 1 climbs to lam from 0 (first step written out) monotonically.
    lam = np.maximum(q**1.5 - q, 0.0) / (g2 + 1e-12)
    for _ in range(2):
        s = sum(c2 * a2 / (a2 + lam) ** 2 for c2, a2 in sq)
        t = sum(c2 * a2 / (a2 + lam) ** 3 for c2, a2 in sq) + 1e-12
        lam = np.maximum(lam + (s**1.5 - s) / t, 0.0)  # inside: unused, kept finite
    outside = np.sqrt(sum(c2 * (lam / (a2 + lam)) ** 2 for c2, a2 in sq))
    return np.where(q > 1.0, outside, inside).astype(np.float32)


def _unit_ball(rng, size, ndim):
    """Points uniform in the unit disk (ndim=2) or ball (ndim=3)."""
    x = rng.standard_normal(size + (ndim,))
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    return x * rng.uniform(size=size + (1,)) ** (1.0 / ndim)


def _blobs(shape, centers, sigma, amp):
    """Sum of isotropic Gaussians at ``centers`` (n, K, D), as outer products."""
    n, k, ndim = centers.shape
    out = np.zeros((n,) + shape, dtype=np.float32)
    for j in range(k):
        blob = amp[:, j].reshape((n,) + (1,) * ndim).astype(np.float32)
        for i, size in enumerate(shape):
            g = np.arange(size)[None, :] - centers[:, j, i, None]
            prof = np.exp(-0.5 * (g / sigma[:, j, None]) ** 2).astype(np.float32)
            axes = tuple(size if a == i else 1 for a in range(ndim))
            blob = blob * prof.reshape((n,) + axes)
        out += blob
    return out


def _sample_geometry(n, mitotic, shape, rng):
    """Draw cell and nucleus ellipsoids (centres in pixels, axes in cell frame)."""
    ndim, m = len(shape), min(shape[-2:])
    scale = m / 64.0
    a = np.where(mitotic, rng.uniform(0.28, 0.36, n), rng.uniform(0.32, 0.44, n)) * m
    b = a / np.where(mitotic, rng.uniform(1.0, 1.12, n), rng.uniform(1.15, 1.8, n))
    theta = rng.uniform(0.0, np.pi, n)
    # Keeps the membrane band (width max(0.7, 1.1 * scale)) off the border.
    margin = 2.5 * max(0.7, 1.1 * scale) + 0.02 * np.asarray(shape, float)
    half = (np.asarray(shape, float) - 1.0) / 2.0 - margin
    hy = np.hypot(a * np.sin(theta), b * np.cos(theta))
    hx = np.hypot(a * np.cos(theta), b * np.sin(theta))
    fit = np.minimum(1.0, np.minimum(half[-2] / hy, half[-1] / hx))
    a, b, hy, hx = a * fit, b * fit, hy * fit, hx * fit
    axes = [a, b]
    if ndim == 3:  # flattened in interphase, rounding up (taller) in mitosis
        c = np.where(mitotic, rng.uniform(0.9, 1.0, n), rng.uniform(0.55, 0.85, n))
        axes.append(np.minimum(c * half[0], np.where(mitotic, 0.95, 0.8) * b))
    axes = np.stack(axes, axis=1)
    ext = np.stack(([axes[:, 2]] if ndim == 3 else []) + [hy, hx], axis=1)
    jitter = rng.uniform(-0.8, 0.8, (n, ndim))
    center = (np.asarray(shape) - 1) / 2.0 + jitter * (half - ext)

    # Nucleus: an ellipsoid in interphase; in mitosis the metaphase plate, thin
    # along the long axis (the spindle aligns with it) and centred.
    gap = max(1.0, 2.5 * scale)
    nuc = axes * np.where(mitotic[:, None], 1.0, rng.uniform(0.5, 0.65, (n, 1)))
    nuc[:, 1] /= np.where(mitotic, 1.0, rng.uniform(1.0, 1.4, n))
    nuc[:, 0] = np.where(mitotic, max(0.9, 1.6 * scale), nuc[:, 0])
    nuc[:, 1] = np.where(mitotic, rng.uniform(0.55, 0.7, n) * b, nuc[:, 1])
    if ndim == 3:
        # Cap the height first, so that a thin cell does not shrink it in-plane.
        nz = np.where(mitotic, np.minimum(nuc[:, 1], 0.8 * axes[:, 2]),
                      rng.uniform(0.6, 0.8, n) * axes[:, 2])
        nuc[:, 2] = np.maximum(np.minimum(nz, 0.95 * axes[:, 2] - gap), 0.8)
    phi = rng.normal(0.0, np.where(mitotic, 0.1, 0.3))
    # Nucleus surface grown by `gap`, in the cell frame scaled to the unit ball:
    # the nucleus keeps its distance to the membrane iff it stays in the ball.
    t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    sphere = np.stack([np.cos(t), np.sin(t)], 1)
    if ndim == 3:
        el = np.linspace(-np.pi / 2, np.pi / 2, 9)[:, None, None]
        ring = np.broadcast_to(np.sin(el), (9, 48, 1))
        sphere = np.concatenate([np.cos(el) * sphere, ring], -1).reshape(-1, 3)

    def surface(nax):
        p = sphere[None] * (nax[:, None, :] + gap)
        uv = (p[..., 0] + 1j * p[..., 1]) * np.exp(1j * phi)[:, None]  # rotate by phi
        uv = np.stack([uv.real, uv.imag], -1)
        return np.concatenate([uv, p[..., 2:]], -1) / axes[:, None]

    shrink = np.minimum(1.0, np.sqrt(0.97 / (surface(nuc) ** 2).sum(-1).max(1)))
    nuc = np.maximum((nuc + gap) * shrink[:, None] - gap, 0.8)
    # Largest shift t along a random direction keeping every surface point p in
    # the unit ball: the positive root of |p + t d|^2 = 1, minimised over p.
    p = surface(nuc)
    psi = rng.uniform(0, 2 * np.pi, n)
    d = np.stack([np.cos(psi), np.sin(psi), 0.3 * rng.normal(size=n)], 1)[:, :ndim]
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    dn = d[:, None, :] / axes[:, None, :]
    alpha, beta, gam = (dn**2).sum(-1), (p * dn).sum(-1), (p**2).sum(-1)
    root = np.sqrt(np.maximum(beta**2 - alpha * (gam - 1), 0))
    tmax = np.maximum(((root - beta) / alpha).min(1), 0)
    reach = np.where(mitotic, 0.0, rng.uniform(0.25, 0.9, n) * tmax)
    offset = _to_image(d * reach[:, None], theta)
    return dict(center=center, theta=theta, axes=axes, nuc_center=center + offset,
                nuc_theta=theta + phi, nuc_axes=nuc, offset=offset, scale=scale)


def _take(geom, idx):
    return {k: (v[idx] if isinstance(v, np.ndarray) else v) for k, v in geom.items()}


def _points(geom, local, prefix=""):
    """Map cell-frame (or nucleus-frame) points (n, K, D) to pixel coordinates."""
    center, theta = geom[prefix + "center"], geom[prefix + "theta"]
    return center[:, None, :] + _to_image(local, theta[:, None])


def _render(name, geom, mitotic, d_cell, d_nuc, rng, shape):
    """Draw one structure for a group of cells, before noise, about in [0, 1]."""
    n, ndim, s = len(mitotic), len(shape), geom["scale"]
    axes, nax, w = geom["axes"], geom["nuc_axes"], max(0.7, 1.1 * s)
    amp = rng.uniform(0.7, 1.0, n).reshape((n,) + (1,) * ndim).astype(np.float32)
    col = mitotic.reshape((n,) + (1,) * ndim)
    if name == "nuclear_envelope":  # nucleus shell; a haze once it has dissolved
        shell = np.exp(-0.5 * (d_nuc / w) ** 2)
        out = np.where(col, 0.25 * _soft(-d_cell, 0.7), shell)
    elif name == "cell_periphery":  # cortex-like band at a fixed depth inside
        out = np.exp(-0.5 * ((d_cell + 1.6 * w) / w) ** 2)
    elif name == "edge_dots":
        t = rng.uniform(0, 2 * np.pi, (n, 10))
        zeta = rng.uniform(-0.5, 0.5, (n, 10))  # 3D: lateral surface only
        lat = np.sqrt(1 - zeta**2) if ndim == 3 else 1.0
        unit = np.stack([np.cos(t) * lat, np.sin(t) * lat, zeta][:ndim], -1)
        pts = _points(geom, unit * np.maximum(axes - 0.8, 0.5)[:, None, :])
        use = np.arange(10) < rng.integers(4, 11, n)[:, None]
        out = _blobs(shape, pts, np.full((n, 10), max(0.7, s)), use)
    elif name == "nucleoli":
        # Interphase: 1-3 blobs deep in the nucleus, masked by it so that none
        # leaks out. Mitosis: faint puncta scattered over the whole cell.
        k = np.where(mitotic, rng.integers(12, 25, n), rng.integers(1, 4, n))
        in_nuc = _points(geom, _unit_ball(rng, (n, 24), ndim) * 0.4 * nax[:, None],
                         "nuc_")
        in_cell = _points(geom, _unit_ball(rng, (n, 24), ndim) * 0.85 * axes[:, None])
        pts = np.where(mitotic[:, None, None], in_cell, in_nuc)
        size = np.sqrt(nax[:, 0] * nax[:, 1])
        size = np.minimum(size, 1.5 * nax[:, 2]) if ndim == 3 else size
        big = np.maximum(0.6, rng.uniform(0.18, 0.25, (n, 24)) * size[:, None])
        sig = np.where(mitotic[:, None], max(0.6, 0.7 * s), big)
        mag = np.where(mitotic[:, None], 0.35, 1.0) * (np.arange(24) < k[:, None])
        out = _blobs(shape, pts, sig, mag)
        out = np.where(col, out, out * _soft(-d_nuc, 0.5))
    elif name == "cytoplasmic_puncta":
        # Uniform in the cell shrunk by a margin; candidates falling in the
        # nucleus (grown by the same margin) are rejected.
        pad = max(1.0, 1.5 * s)
        loc = _unit_ball(rng, (n, 96), ndim) * np.maximum(axes - pad, 0.5)[:, None]
        pts = _points(geom, loc)
        rel = pts - geom["nuc_center"][:, None, :]
        nloc = _to_local(np.moveaxis(rel, -1, 0), geom["nuc_theta"][:, None])
        qn = sum((x / (nax[:, None, i] + pad)) ** 2 for i, x in enumerate(nloc))
        order = np.argsort(qn <= 1.0, axis=1, kind="stable")[:, :30]
        pts = np.take_along_axis(pts, order[..., None], 1)
        use = np.take_along_axis(qn > 1.0, order, 1)
        use &= np.arange(30) < rng.integers(10, 31, n)[:, None]
        out = _blobs(shape, pts, np.full((n, 30), max(0.6, 0.8 * s)), 0.85 * use)
    else:  # control_noise: support set by the cell, mean by the nucleus
        mean = np.where(d_nuc <= 0, 0.4, 0.2)
        z = rng.standard_normal(d_cell.shape, dtype=np.float32)
        out = np.where(d_cell <= 0.5, np.clip(mean + 0.1 * z, 0, 1), 0)
    return (amp * out).astype(np.float32)


def make_cells(n_samples=500, *, ndim=2, shape=None, structures=None,
               mitosis_fraction=0.15, noise=0.02, random_state=None):
    """Generate synthetic cells with a tagged structure of known placement.

    Each cell is an ellipse (2D) or a flattened ellipsoid (3D) of random size,
    elongation and in-plane orientation, holding an off-centre nucleus. A
    fraction of cells are in mitosis: rounder, with the DNA condensed into a
    bright metaphase plate at the cell centre. The third channel shows one
    structure, placed by the rule summarised in :func:`structure_ground_truth`.

    Parameters
    ----------
    n_samples : int, default=500
        Number of cells.
    ndim : {2, 3}, default=2
        Number of spatial axes.
    shape : tuple of int or None, default=None
        Spatial shape ``(Y, X)`` or ``(Z, Y, X)``, every axis at least 8, and
        Z at least 0.15 times the smaller of Y and X. ``None`` means ``(64, 64)``
        in 2D and ``(24, 64, 64)`` in 3D. Stacks flatter than the default draw
        smaller interphase nuclei (nucleus volume 14% of the cell's at
        ``(24, 64, 64)``, 6% at ``(16, 64, 64)``, 2% at ``(12, 64, 64)``).
    structures : list of str or None, default=None
        Structures to draw labels from, a subset of ``STRUCTURES`` (default:
        all). Labels are balanced (counts differ by at most one), then shuffled.
    mitosis_fraction : float, default=0.15
        Fraction of cells in mitosis, rounded to a whole number of cells.
    noise : float, default=0.02
        Standard deviation of the Gaussian pixel noise added to every channel
        (except ``control_blank`` and ``control_noise``) before clipping.
    random_state : None, int, numpy.random.RandomState or numpy.random.Generator
        Seed or generator; the same seed gives identical cells.

    Returns
    -------
    X : ndarray of float32, shape (n_samples, 3, [Z,] Y, X)
        Images in [0, 1]; channels are membrane, DNA and structure.
    y : ndarray of object, shape (n_samples,)
        Structure label of each cell.
    metadata : pandas.DataFrame
        One row per cell: ``structure``; ``rendered_structure`` (for
        ``control_random`` the structure drawn in the other cell, else the
        label); ``cell_cycle_phase``; ``cell_area`` and ``nucleus_area`` (2D,
        pixels) or ``cell_volume`` and ``nucleus_volume`` (3D, voxels);
        ``cell_height`` (3D: z-extent of the cell in voxels; NaN in 2D);
        ``cell_major_axis`` and ``cell_minor_axis`` (full lengths in pixels);
        ``cell_orientation`` (angle of the major axis from the x axis towards
        y, radians in [0, pi)); ``cell_elongation`` (major / minor);
        ``cell_center_y``, ``cell_center_x`` and ``nucleus_offset_y``,
        ``nucleus_offset_x`` (nucleus centre minus cell centre), plus the
        ``_z`` columns in 3D; ``membrane_intensity``, ``dna_intensity`` and
        ``structure_intensity`` (channel sums).

    Raises
    ------
    TypeError
        If ``n_samples``, ``ndim``, ``shape``, ``structures``,
        ``mitosis_fraction`` or ``noise`` has the wrong type.
    ValueError
        If ``n_samples < 1``, ``ndim`` is not 2 or 3, ``shape`` has the wrong
        length or an axis below 8, ``structures`` is empty or names an unknown
        structure, ``mitosis_fraction`` is outside [0, 1], ``noise`` is
        negative or ``random_state`` cannot seed a generator.

    Examples
    --------
    >>> from cellgen.datasets import make_cells
    >>> X, y, meta = make_cells(20, shape=(32, 32), random_state=0)
    >>> X.shape, X.dtype, y.shape, len(meta)
    ((20, 3, 32, 32), dtype('float32'), (20,), 20)
    >>> bool(X.min() >= 0 and X.max() <= 1)
    True
    >>> X3, _, _ = make_cells(2, ndim=3, shape=(8, 16, 16), random_state=0)
    >>> X3.shape
    (2, 3, 8, 16, 16)
    """
    n, shape, structures, rng = _check_args(n_samples, ndim, shape, structures,
                                            mitosis_fraction, noise, random_state)
    order = rng.permutation(np.array(structures, dtype=object))  # random leftovers
    labels = rng.permutation(np.resize(order, n))
    mitotic = rng.permutation(n) < round(mitosis_fraction * n)
    geom = _sample_geometry(n, mitotic, shape, rng)
    # control_random shows a structure placed in an independently drawn cell,
    # so its channel says nothing about this cell's own reference channels.
    is_random = labels == "control_random"
    donor_mitotic = rng.uniform(size=n) < mitosis_fraction
    donor = _sample_geometry(n, donor_mitotic, shape, rng)
    rendered = np.where(is_random, rng.choice(_RENDERED, n), labels).astype(object)
    s_geom = {k: np.where(is_random.reshape((n,) + (1,) * (v.ndim - 1)), donor[k], v)
              for k, v in geom.items() if k != "scale"} | {"scale": geom["scale"]}
    s_mitotic = np.where(is_random, donor_mitotic, mitotic)
    bright = rng.uniform(0.75, 1.0, (n, 2, *(1,) * ndim)).astype(np.float32)

    X = np.zeros((n, 3) + shape, dtype=np.float32)
    spatial = tuple(range(1, ndim + 1))
    cell_size, nuc_size, height = np.empty(n), np.empty(n), np.full(n, np.nan)
    w, tex_sigma = max(0.7, 1.1 * geom["scale"]), max(1.0, 3.0 * geom["scale"])
    step = max(1, _CHUNK_VOXELS // int(np.prod(shape)))
    for start in range(0, n, step):
        sl = slice(start, min(start + step, n))
        g = _take(geom, sl)
        d_cell, d_nuc = _signed_distance(shape, g), _signed_distance(shape, g, "nuc_")
        cell_size[sl] = (d_cell <= 0).sum(spatial)
        nuc_size[sl] = (d_nuc <= 0).sum(spatial)
        if ndim == 3:
            height[sl] = (d_cell <= 0).any(axis=(2, 3)).sum(1)
        band = 0.85 * np.exp(-0.5 * (d_cell / w) ** 2) + 0.15 * _soft(-d_cell, 0.7)
        X[sl, 0] = bright[sl, 0] * band
        # Mild chromatin texture: smooth noise, standardised per cell.
        tex = rng.standard_normal(d_cell.shape, dtype=np.float32)
        tex = gaussian_filter(tex, (0,) + (tex_sigma,) * ndim)
        tex /= tex.std(axis=spatial, keepdims=True) + 1e-6
        level = np.where(mitotic[sl].reshape(-1, *(1,) * ndim), 0.95, 0.7 + 0.12 * tex)
        X[sl, 1] = bright[sl, 1] * _soft(-d_nuc, 0.6) * level
        lab, ren = labels[sl], rendered[sl]
        rand = np.flatnonzero(is_random[sl])
        if rand.size:  # the donors' fields stand in for these cells' own
            d_cell, d_nuc = d_cell.copy(), d_nuc.copy()
            g = _take(s_geom, rand + start)
            d_cell[rand] = _signed_distance(shape, g)
            d_nuc[rand] = _signed_distance(shape, g, "nuc_")
        for name in dict.fromkeys(ren):
            if name in _RENDERED or name == "control_noise":
                sel = np.flatnonzero(ren == name)
                X[start + sel, 2] = _render(
                    name, _take(s_geom, start + sel), s_mitotic[start + sel],
                    d_cell[sel], d_nuc[sel], rng, shape,
                )
        noisy = np.flatnonzero(np.isin(lab, _RENDERED + ("control_random",))) + start
        X[sl, :2] += noise * rng.standard_normal(X[sl, :2].shape, dtype=np.float32)
        X[noisy, 2] += noise * rng.standard_normal((noisy.size,) + shape, np.float32)
        np.clip(X[sl], 0.0, 1.0, out=X[sl])
        for name, channel in (("control_dna", 1), ("control_membrane", 0)):
            copy = np.flatnonzero(lab == name) + start
            X[copy, 2] = X[copy, channel]

    unit = "area" if ndim == 2 else "volume"
    a, b = geom["axes"][:, 0], geom["axes"][:, 1]
    phase = np.where(mitotic, "mitosis", "interphase").astype(object)
    meta = {"structure": labels, "rendered_structure": rendered,
            "cell_cycle_phase": phase, f"cell_{unit}": cell_size.astype(np.int64),
            f"nucleus_{unit}": nuc_size.astype(np.int64), "cell_height": height,
            "cell_major_axis": 2 * a, "cell_minor_axis": 2 * b,
            "cell_orientation": geom["theta"], "cell_elongation": a / b}
    for prefix, key in (("cell_center_", "center"), ("nucleus_offset_", "offset")):
        for i, ax in enumerate("zyx"[3 - ndim :]):
            meta[prefix + ax] = geom[key][:, i]
    sums = X.sum(axis=tuple(range(2, ndim + 2)), dtype=np.float64)
    for i, channel in enumerate(("membrane", "dna", "structure")):
        meta[f"{channel}_intensity"] = sums[:, i]
    return X, labels.astype(object), pd.DataFrame(meta)
