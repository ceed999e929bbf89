"""Drug effects in a latent space: two-sample tests, directions of effect, doses.

The Statistical Cell paper (section 4.5, Fig. 6) embeds treated and untreated
cells, checks that the reference embedding (cell and nuclear shape) barely
moves, takes the direction of effect in the structure embedding as the
difference of the population centroids (treated - control), and shows cells
sampled at fixed steps along that direction. Everything here takes plain
embeddings (2D arrays or DataFrames, rows are cells), so it works with either
of the Statistical Cell's latent spaces, another model's features, or
CellProfiler measurements.
"""

from __future__ import annotations

import numbers
import warnings
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy.spatial.distance import cdist
from scipy.stats import false_discovery_control, spearmanr
from sklearn.exceptions import FitFailedWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import (
    StratifiedGroupKFold,
    StratifiedKFold,
    cross_val_score,
    permutation_test_score,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_random_state

from ._rows import _align_rows

__all__ = [
    "TwoSampleResult",
    "EffectDirection",
    "energy_distance_test",
    "classifier_auc_test",
    "drug_effects",
    "effect_direction",
    "project_onto",
    "cells_along",
    "dose_response",
]

_TESTS = ("energy", "auc", None)
# Permutations are evaluated in blocks of this many columns, bounding the
# (n_cells, block) indicator and product arrays next to the distance matrix.
_PERMUTATION_BLOCK = 128


@dataclass(frozen=True)
class TwoSampleResult:
    """Outcome of a two-sample test: the statistic and its permutation p-value.

    Parameters
    ----------
    statistic : float
        The test statistic (energy distance, or cross-validated ROC AUC).
    p_value : float
        Permutation p-value ``(1 + #{permuted >= observed}) / (1 + n_permutations)``;
        NaN when ``n_permutations`` is 0.
    n_permutations : int
        Number of label permutations behind ``p_value``.

    See Also
    --------
    energy_distance_test, classifier_auc_test

    Examples
    --------
    >>> from cellgen.analysis import TwoSampleResult
    >>> result = TwoSampleResult(statistic=0.8, p_value=0.001, n_permutations=999)
    >>> statistic, p_value, n_permutations = result.statistic, result.p_value, 999
    >>> result.p_value < 0.05
    True
    """

    statistic: float
    p_value: float
    n_permutations: int


class EffectDirection(NamedTuple):
    """Direction of a treatment effect: unit vector, control centroid and length.

    Parameters
    ----------
    direction : ndarray of shape (n_features,)
        Unit vector from the control centroid towards the treated centroid.
    origin : ndarray of shape (n_features,)
        The control centroid.
    length : float
        Distance between the two centroids, so the treated centroid is
        ``origin + length * direction``.

    See Also
    --------
    effect_direction

    Examples
    --------
    >>> import numpy as np
    >>> from cellgen.analysis import EffectDirection
    >>> direction, origin, length = EffectDirection(np.array([1.0, 0.0]), np.zeros(2), 2.0)
    >>> origin + length * direction
    array([2., 0.])
    """

    direction: np.ndarray
    origin: np.ndarray
    length: float


# --------------------------------------------------------------------------- #
# validation helpers
# --------------------------------------------------------------------------- #
def _as_matrix(Z, name, *, min_rows=1):
    try:
        arr = np.asarray(Z, dtype=float)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a 2D numeric array or DataFrame: {exc}") from exc
    if arr.ndim == 1:
        arr = arr[:, None]  # a single feature, as a column
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2D (n_cells, n_features); got shape {arr.shape}.")
    if arr.shape[0] < min_rows or arr.shape[1] == 0:
        raise ValueError(
            f"{name} needs at least {min_rows} row(s) and one column; got shape {arr.shape}."
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} holds NaN or infinite values.")
    return arr


def _pair(A, B, *, min_rows=1):
    A = _as_matrix(A, "A", min_rows=min_rows)
    B = _as_matrix(B, "B", min_rows=min_rows)
    if A.shape[1] != B.shape[1]:
        raise ValueError(
            f"A and B must have the same number of features; got {A.shape[1]} and {B.shape[1]}."
        )
    return A, B


def _check_count(value, name, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}.")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}.")
    return int(value)


def _vector(v, name, n_features):
    v = np.asarray(v, dtype=float).ravel()
    if v.shape != (n_features,):
        raise ValueError(f"{name} must have {n_features} entries to match Z; got {v.size}.")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name} holds NaN or infinite values.")
    return v


# --------------------------------------------------------------------------- #
# two-sample tests
# --------------------------------------------------------------------------- #
def _energy_statistics(D, members, n_a, n_b, row_sums, total):
    """Energy distances for label columns ``members`` (n, k) of 0/1 (1 = sample A).

    The within-sample means are over pairs of distinct cells (the U-statistic):
    counting each cell's zero distance to itself would bias the statistic by
    about the mean distance times ``1/n_a + 1/n_b``, which changes when whole
    wells of different sizes are permuted and would make well-level p-values
    too small.
    """
    DA = D @ members
    s_aa = np.einsum("ij,ij->j", members, DA)
    s_ab = members.T @ row_sums - s_aa
    s_bb = total - s_aa - 2.0 * s_ab
    # A sample of one cell has no pair: its (zero) within sum counts as 0.
    pairs_a = np.maximum(n_a * (n_a - 1), 1)
    pairs_b = np.maximum(n_b * (n_b - 1), 1)
    return 2.0 * s_ab / (n_a * n_b) - s_aa / pairs_a - s_bb / pairs_b


def _units(groups_a, groups_b, n_a, n_b):
    """Integer unit codes of the pooled cells (A then B), or None without groups.

    A unit (a well, say) is exchanged as a whole by the permutation tests, so
    it must belong to one sample only.
    """
    if groups_a is None and groups_b is None:
        return None
    if groups_a is None or groups_b is None:
        raise ValueError("pass both groups_a and groups_b (the unit of each cell of A and of "
                         "B), or neither.")
    ga = np.asarray(groups_a, dtype=object).ravel()
    gb = np.asarray(groups_b, dtype=object).ravel()
    if ga.shape != (n_a,) or gb.shape != (n_b,):
        raise ValueError(f"groups_a and groups_b must hold one unit per cell ({n_a} and {n_b}); "
                         f"got {ga.size} and {gb.size}.")
    if pd.isna(ga).any() or pd.isna(gb).any():
        raise ValueError("groups_a and groups_b must not hold missing values.")
    shared = set(ga.tolist()) & set(gb.tolist())
    if shared:
        raise ValueError(f"units {sorted(shared, key=str)[:5]} hold cells of both samples; a "
                         "unit (a well) must be treated or control, not both.")
    codes, _ = pd.factorize(np.concatenate([ga, gb]))
    return codes


def _unit_permutations(rng, units, n_units_a, k):
    """``k`` random reassignments of whole units to sample A: (n_cells, k) 0/1 columns."""
    n_units = units.max() + 1
    chosen = np.zeros((n_units, k))
    for j in range(k):
        chosen[rng.permutation(n_units)[:n_units_a], j] = 1.0
    return chosen[units]


def energy_distance_test(A, B, *, groups_a=None, groups_b=None, n_permutations=999,
                         random_state=None):
    """Multivariate energy distance between two samples, with a permutation p-value.

    The energy distance (Székely and Rizzo) is
    ``2 E|a - b| - E|a - a'| - E|b - b'|`` with Euclidean norms, estimated by
    the means over pairs of distinct cells (the unbiased U-statistic: about 0,
    and sometimes slightly negative, for samples of one distribution). The
    distance is zero exactly when the two distributions are equal, so it sees
    changes of the mean, the spread and the shape alike.
    The p-value comes from permuting the sample labels: of single cells, or
    with ``groups_a`` and ``groups_b`` of whole units (wells, plates).

    Cells of one well share more than the treatment (the well's density,
    focus, staining), so they are not independent draws: with several wells
    per condition, pass the wells as groups. Permuting cells then would
    count a well-to-well difference as an effect; permuting wells does not.

    Parameters
    ----------
    A : array-like of shape (n_a, n_features)
        The first sample (for example treated cells' embeddings).
    B : array-like of shape (n_b, n_features)
        The second sample (for example control cells' embeddings).
    groups_a, groups_b : array-like of shape (n_a,) and (n_b,) or None, default=None
        The unit (well) of each cell of ``A`` and of ``B``; a unit belongs to
        one sample. Given, permutations reassign whole units, keeping the
        number of units of ``A``; the smallest possible p-value is then
        ``1 / C(n_units, n_units_a)`` (``2 / C`` when both sides have as many
        units, since swapping the two sides gives the same statistic), so a
        handful of wells cannot give a small one, as it should be: 3 against 3
        wells cannot go below 0.1.
    n_permutations : int, default=999
        Label permutations for the p-value; 0 skips the test (p-value NaN).
    random_state : int, RandomState instance or None, default=None
        Seeds the permutations.

    Returns
    -------
    result : TwoSampleResult
        ``statistic`` (the energy distance), ``p_value``
        (``(1 + #{permuted >= observed}) / (1 + n_permutations)``) and
        ``n_permutations``.

    Raises
    ------
    ValueError
        If a sample is empty, the feature counts differ, values are not
        finite, or a unit holds cells of both samples.

    See Also
    --------
    classifier_auc_test : A learned test, sharper for effects along few directions.

    Notes
    -----
    The pooled ``(n_a + n_b)``-square distance matrix is computed once (8 bytes
    per entry: 32 MB for 2,000 cells, 200 MB for 5,000) and every permutation
    reuses it through matrix products, in blocks of 128 permutations; the cost
    is ``O(n^2 (d + n_permutations))``. Subsample the larger group for tens of
    thousands of cells.

    Examples
    --------
    >>> import numpy as np
    >>> from cellgen.analysis import energy_distance_test
    >>> rng = np.random.RandomState(0)
    >>> control, treated = rng.normal(size=(60, 4)), rng.normal(size=(50, 4)) + [1, 0, 0, 0]
    >>> result = energy_distance_test(treated, control, n_permutations=199, random_state=0)
    >>> round(result.statistic, 2) > 0, result.p_value
    (True, 0.005)
    """
    A, B = _pair(A, B)
    n_permutations = _check_count(n_permutations, "n_permutations", 0)
    n_a, n_b = len(A), len(B)
    n = n_a + n_b
    units = _units(groups_a, groups_b, n_a, n_b)
    D = cdist(np.vstack([A, B]), np.vstack([A, B]))
    row_sums = D.sum(axis=1)
    total = row_sums.sum()
    observed_members = np.zeros((n, 1))
    observed_members[:n_a] = 1.0
    observed = float(_energy_statistics(D, observed_members, n_a, n_b, row_sums, total)[0])
    if n_permutations == 0:
        return TwoSampleResult(observed, float("nan"), 0)

    rng = check_random_state(random_state)
    # Ties with the observed value (the identity permutation, say) must count,
    # and the blockwise products differ from the observed one by rounding only.
    # Relative to the data's own scale (the mean distance), so that rescaling the
    # embedding cannot change the p-value.
    threshold = observed - 1e-10 * max(abs(observed), total / n**2)
    n_extreme = 0
    n_units_a = None if units is None else len(np.unique(units[:n_a]))
    for start in range(0, n_permutations, _PERMUTATION_BLOCK):
        k = min(_PERMUTATION_BLOCK, n_permutations - start)
        if units is None:
            members = np.zeros((n, k))
            for j in range(k):
                members[rng.permutation(n)[:n_a], j] = 1.0
            sizes = n_a
        else:  # whole units move, so the number of cells of A varies
            members = _unit_permutations(rng, units, n_units_a, k)
            sizes = members.sum(axis=0)
        stats = _energy_statistics(D, members, sizes, n - sizes, row_sums, total)
        n_extreme += int(np.count_nonzero(stats >= threshold))
    return TwoSampleResult(observed, (1 + n_extreme) / (1 + n_permutations), n_permutations)


def _n_splits(cv):
    try:
        return int(cv.get_n_splits())
    except (AttributeError, TypeError, ValueError):  # splitters that need the data
        return 1


def _splitter(cv, n_min, random_state, unit="cells"):
    """The folds: stratified over cells, or keeping whole units with ``unit="units"``."""
    if isinstance(cv, numbers.Integral) and not isinstance(cv, bool):
        cv = _check_count(cv, "cv", 2)
        if n_min < cv:
            raise ValueError(
                f"cv={cv} folds need at least {cv} {unit} in each sample; the smaller has {n_min}."
            )
        seed = check_random_state(random_state).randint(np.iinfo(np.int32).max)
        kfold = StratifiedKFold if unit == "cells" else StratifiedGroupKFold
        return kfold(cv, shuffle=True, random_state=seed)
    if hasattr(cv, "split"):
        return cv
    raise TypeError(f"cv must be an integer or a cross-validation splitter, got {cv!r}.")


def classifier_auc_test(A, B, *, groups_a=None, groups_b=None, cv=5, n_permutations=100,
                        random_state=None):
    """Cross-validated ROC AUC of a linear classifier telling two samples apart.

    A standardized logistic regression learns to separate ``A`` from ``B``;
    its ROC AUC on held-out folds is 0.5 when the samples are exchangeable and
    approaches 1 when they are separable. The p-value comes from
    :func:`sklearn.model_selection.permutation_test_score` (labels permuted,
    the whole cross-validation repeated).

    Parameters
    ----------
    A : array-like of shape (n_a, n_features)
        The first sample (labelled 1 for the classifier).
    B : array-like of shape (n_b, n_features)
        The second sample (labelled 0).
    groups_a, groups_b : array-like of shape (n_a,) and (n_b,) or None, default=None
        The unit (well) of each cell; see :func:`energy_distance_test`. Given,
        the folds keep each unit whole
        (:class:`~sklearn.model_selection.StratifiedGroupKFold`: the classifier
        is scored on wells it never saw) and the permutations reassign whole
        units; each side needs at least ``cv`` units.
    cv : int or cross-validation splitter, default=5
        Folds of a shuffled :class:`~sklearn.model_selection.StratifiedKFold`
        (:class:`~sklearn.model_selection.StratifiedGroupKFold` with groups),
        or a splitter (given the units as ``groups`` when there are some).
    n_permutations : int, default=100
        Label permutations for the p-value; 0 skips the test (p-value NaN).
    random_state : int, RandomState instance or None, default=None
        Seeds the fold assignment and the permutations.

    Returns
    -------
    result : TwoSampleResult
        ``statistic`` (the mean held-out ROC AUC), ``p_value`` and
        ``n_permutations``.

    Raises
    ------
    ValueError
        If a sample is smaller than the number of folds, the feature counts
        differ or values are not finite.

    See Also
    --------
    energy_distance_test : A test with no model to fit.

    Examples
    --------
    >>> import numpy as np
    >>> from cellgen.analysis import classifier_auc_test
    >>> rng = np.random.RandomState(0)
    >>> control, treated = rng.normal(size=(40, 3)), rng.normal(size=(40, 3)) + [3, 0, 0]
    >>> result = classifier_auc_test(treated, control, n_permutations=19, random_state=0)
    >>> result.statistic > 0.9, result.p_value
    (True, 0.05)
    """
    A, B = _pair(A, B)
    n_permutations = _check_count(n_permutations, "n_permutations", 0)
    rng = check_random_state(random_state)
    units = _units(groups_a, groups_b, len(A), len(B))
    X = np.vstack([A, B])
    y = np.r_[np.ones(len(A), dtype=int), np.zeros(len(B), dtype=int)]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    if units is not None:
        return _grouped_auc_test(model, X, y, units, cv, n_permutations, rng)
    splitter = _splitter(cv, min(len(A), len(B)), rng)
    _check_folds(splitter, X, y, None)
    if n_permutations == 0:
        auc = cross_val_score(model, X, y, cv=splitter, scoring="roc_auc").mean()
        return TwoSampleResult(float(auc), float("nan"), 0)
    auc, null, _ = permutation_test_score(
        model, X, y, cv=splitter, scoring="roc_auc", n_permutations=n_permutations,
        random_state=rng.randint(np.iinfo(np.int32).max))
    return TwoSampleResult(float(auc), _permutation_p(auc, null), n_permutations)


def _permutation_p(observed, null):
    """The permutation p-value ``(1 + #(null >= observed)) / (1 + n)``.

    A null score that could not be computed (NaN: a fold with one class) counts
    as extreme; a NaN observed score has no p-value.
    """
    if not np.isfinite(observed):
        return float("nan")
    null = np.asarray(null, dtype=float)
    extreme = np.count_nonzero(~(null < observed))
    return float((1 + extreme) / (1 + len(null)))


def _check_folds(splitter, X, y, groups):
    """Every fold must train and test on both samples, or its AUC is undefined."""
    for i, (train, test) in enumerate(splitter.split(X, y, groups)):
        for part, idx in (("test", test), ("training", train)):
            if len(np.unique(y[idx])) < 2:
                raise ValueError(
                    f"fold {i} of cv={splitter!r} puts the cells of one sample only in its "
                    f"{part} part, so no AUC can be computed; each sample needs at least as "
                    "many cells (or wells) as there are folds, in stratified folds."
                )


def _grouped_auc_test(model, X, y, units, cv, n_permutations, rng):
    """``classifier_auc_test`` with whole units in the folds and in the permutations."""
    n_units_a = len(np.unique(units[y == 1]))
    n_units_b = len(np.unique(units[y == 0]))
    cv = _splitter(cv, min(n_units_a, n_units_b), rng, unit="units")
    _check_folds(cv, X, y, units)

    def score(labels):
        # A permutation can leave a fold of a non-stratified splitter with one class:
        # its AUC is undefined (NaN, counted as extreme), not an error.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FitFailedWarning)
            try:
                return cross_val_score(model, X, labels, groups=units, cv=cv,
                                       scoring="roc_auc", error_score=np.nan).mean()
            except ValueError:  # every fit failed
                return np.nan

    auc = float(score(y))
    if n_permutations == 0:
        return TwoSampleResult(auc, float("nan"), 0)
    permuted = _unit_permutations(rng, units, n_units_a, n_permutations).astype(int)
    null = np.array([score(permuted[:, j]) for j in range(n_permutations)])
    return TwoSampleResult(auc, _permutation_p(auc, null), n_permutations)


# --------------------------------------------------------------------------- #
# directions of effect
# --------------------------------------------------------------------------- #
def effect_direction(Z_treated, Z_control):
    """Direction of a treatment effect: the difference of the population centroids.

    As in the Statistical Cell paper (section 4.5, Fig. 6b), the effect of a
    drug in a latent space is the vector from the centroid of the untreated
    cells to the centroid of the treated cells.

    Parameters
    ----------
    Z_treated : array-like of shape (n_treated, n_features)
        Embeddings of the treated cells.
    Z_control : array-like of shape (n_control, n_features)
        Embeddings of the control (untreated) cells.

    Returns
    -------
    effect : EffectDirection
        Named tuple ``(direction, origin, length)``: the unit vector from the
        control centroid to the treated centroid, the control centroid and the
        distance between the centroids.

    Raises
    ------
    ValueError
        If the centroids coincide (no direction), a sample is empty or the
        feature counts differ.

    See Also
    --------
    project_onto, cells_along, drug_effects

    Examples
    --------
    >>> import numpy as np
    >>> from cellgen.analysis import effect_direction
    >>> control = np.array([[0.0, 0.0], [0.0, 2.0]])
    >>> treated = np.array([[3.0, 1.0], [5.0, 1.0]])
    >>> direction, origin, length = effect_direction(treated, control)
    >>> direction, origin, length
    (array([1., 0.]), array([0., 1.]), 4.0)
    """
    T, C = _pair(Z_treated, Z_control)
    origin = C.mean(axis=0)
    delta = T.mean(axis=0) - origin
    length = float(np.linalg.norm(delta))
    if not length > 0:
        raise ValueError("the treated and control centroids coincide: there is no direction.")
    return EffectDirection(delta / length, origin, length)


def project_onto(Z, direction, origin):
    """Coordinates of cells along a direction of effect.

    Parameters
    ----------
    Z : array-like of shape (n_cells, n_features)
        Embeddings.
    direction : array-like of shape (n_features,)
        Direction of effect; scaled to unit length here, so coordinates are in
        the latent space's units.
    origin : array-like of shape (n_features,)
        Point at coordinate 0, usually the control centroid.

    Returns
    -------
    t : ndarray of shape (n_cells,)
        ``(Z - origin) @ direction / |direction|``: 0 at the control centroid
        and ``length`` at the treated centroid for the output of
        :func:`effect_direction`.

    See Also
    --------
    effect_direction

    Examples
    --------
    >>> import numpy as np
    >>> from cellgen.analysis import project_onto
    >>> project_onto([[1.0, 5.0], [3.0, -1.0]], direction=[2.0, 0.0], origin=[1.0, 0.0])
    array([0., 2.])
    """
    Z = _as_matrix(Z, "Z")
    direction = _vector(direction, "direction", Z.shape[1])
    origin = _vector(origin, "origin", Z.shape[1])
    norm = np.linalg.norm(direction)
    if not norm > 0:
        raise ValueError("direction is the zero vector.")
    return (Z - origin) @ (direction / norm)


def cells_along(Z, direction, origin, *, n=8, span=(0.02, 0.98)):
    """Cells at evenly spaced positions along a direction, from control to treated end.

    The cells' projections onto the direction (:func:`project_onto`) are
    covered by ``n`` evenly spaced targets between two quantiles, and the cell
    nearest each target is taken (each cell at most once), as in the paper's
    Fig. 6c, where cells are "sampled at fixed intervals from the
    untreated-to-treated direction".

    Parameters
    ----------
    Z : array-like of shape (n_cells, n_features)
        Embeddings of the cells to choose from (usually treated and control
        cells together).
    direction : array-like of shape (n_features,)
        Direction of effect, from control to treated.
    origin : array-like of shape (n_features,)
        Point at coordinate 0, usually the control centroid.
    n : int, default=8
        Number of cells to pick; at most ``n_cells``.
    span : tuple of (float, float), default=(0.02, 0.98)
        Quantiles of the projections at the first and last target; the default
        keeps a few extreme cells from setting the range.

    Returns
    -------
    indices : ndarray of int of shape (n,)
        Row indices into ``Z``, ordered by increasing projection (control end
        first).

    See Also
    --------
    effect_direction, project_onto

    Examples
    --------
    >>> import numpy as np
    >>> from cellgen.analysis import cells_along
    >>> Z = np.array([[0.5, 9.0], [3.0, 0.0], [0.0, 1.0], [1.6, 2.0], [1.0, 0.0]])
    >>> cells_along(Z, direction=[1.0, 0.0], origin=[0.0, 0.0], n=3, span=(0, 1))
    array([2, 3, 1])
    """
    Z = _as_matrix(Z, "Z")
    n = _check_count(n, "n", 1)
    if n > len(Z):
        raise ValueError(f"n={n} cells were asked for but Z holds only {len(Z)}.")
    lo, hi = (float(q) for q in span)
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"span must be two quantiles 0 <= low <= high <= 1; got {span!r}.")
    t = project_onto(Z, direction, origin)
    targets = np.linspace(*np.quantile(t, [lo, hi]), n)
    free = np.ones(len(t), dtype=bool)
    picked = []
    for target in targets:
        gap = np.where(free, np.abs(t - target), np.inf)
        i = int(np.argmin(gap))
        free[i] = False
        picked.append(i)
    picked = np.asarray(picked, dtype=int)
    # A cell taken by an earlier target can lie past a later one; sorting keeps
    # the strip monotone from the control end to the treated end.
    return picked[np.argsort(t[picked], kind="stable")]


def dose_response(Z, doses, direction, origin):
    """Projection onto a direction of effect per dose, with a rank correlation.

    Parameters
    ----------
    Z : array-like of shape (n_cells, n_features)
        Embeddings; include the control cells with dose 0 to anchor the curve.
    doses : array-like of shape (n_cells,)
        Numeric dose (concentration) of each cell. A Series is paired with the
        rows of ``Z`` by index label when ``Z`` is a DataFrame, else by position.
    direction : array-like of shape (n_features,)
        Direction of effect (scaled to unit length).
    origin : array-like of shape (n_features,)
        Point at coordinate 0, usually the control centroid.

    Returns
    -------
    frame : pandas.DataFrame
        One row per dose, in increasing order, indexed by ``dose``, with
        columns ``n`` (cells), ``mean`` and ``sem`` (standard error of the mean,
        NaN for a single cell) of the projection. ``frame.attrs`` holds
        ``spearman_rho`` and ``spearman_p``: Spearman's correlation of dose and
        projection over the cells, and its two-sided p-value
        (:func:`scipy.stats.spearmanr`; NaN with fewer than two doses). The
        p-value treats cells as independent; with several wells per dose,
        pass per-well mean embeddings (and the wells' doses) instead,
        so that well-to-well differences are not counted as a trend.

    Raises
    ------
    ValueError
        If ``doses`` does not have one numeric, finite value per cell, or ``Z``
        and ``doses`` are both labelled by pandas indexes whose labels differ.

    See Also
    --------
    effect_direction, cellgen.plotting.plot_dose_response

    Examples
    --------
    >>> import numpy as np
    >>> from cellgen.analysis import dose_response
    >>> Z = np.array([[0.0], [0.2], [1.0], [1.2], [2.1], [1.9]])
    >>> frame = dose_response(Z, [0, 0, 1, 1, 3, 3], direction=[1.0], origin=[0.0])
    >>> frame["mean"].round(2).tolist(), frame.attrs["spearman_rho"] > 0.9
    ([0.1, 1.1, 2.0], True)
    """
    if getattr(doses, "shape", (None,))[0] == len(Z):
        doses = _align_rows(Z, doses, "Z", "doses")
    Z = _as_matrix(Z, "Z")
    try:
        doses = np.asarray(doses, dtype=float).ravel()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"doses must be numeric: {exc}") from exc
    if doses.shape != (len(Z),):
        raise ValueError(f"doses must hold one value per cell ({len(Z)}); got {doses.size}.")
    if not np.all(np.isfinite(doses)):
        raise ValueError("doses holds NaN or infinite values.")
    t = project_onto(Z, direction, origin)
    frame = (pd.DataFrame({"dose": doses, "t": t}).groupby("dose")["t"]
             .agg(n="size", mean="mean", sem="sem"))
    if len(frame) > 1:
        rho, p = spearmanr(doses, t)
    else:
        rho = p = float("nan")
    frame.attrs["spearman_rho"] = float(rho)
    frame.attrs["spearman_p"] = float(p)
    return frame


# --------------------------------------------------------------------------- #
# many treatments at once
# --------------------------------------------------------------------------- #
def _columns(frame, names, what):
    missing = [c for c in names if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} column(s) {missing} not found in metadata; available "
                         f"columns: {list(frame.columns)}.")


def _feature_names(Z, n_features):
    if isinstance(Z, pd.DataFrame):
        return [str(c) for c in Z.columns]
    return [f"z{i}" for i in range(n_features)]


def drug_effects(Z, metadata, *, treatment="compound", control="DMSO", by=None,
                 replicate=None, test="energy", n_permutations=999, random_state=None, cv=5,
                 return_directions=False):
    """Effect of every treatment against the control cells, in one tidy table.

    For each treatment other than ``control`` (within each group of ``by``,
    against the control cells of the same group), report the size of the
    shift of the population centroid, a two-sample test of any difference
    and, on request, the direction of effect (treated centroid - control
    centroid, as a unit vector; section 4.5 of the Statistical Cell paper).

    Parameters
    ----------
    Z : array-like or pandas.DataFrame of shape (n_cells, n_features)
        Embeddings, one row per cell in the order of ``metadata``. To ask
        whether a drug changes cell shape or only the structure, call this
        once on the reference embedding and once on the structure embedding.
    metadata : pandas.DataFrame of shape (n_cells, n_columns)
        Per-cell annotations holding ``treatment`` and the ``by`` columns.
    treatment : str, default="compound"
        Column naming each cell's treatment.
    control : object, default="DMSO"
        Value of ``treatment`` marking the control cells; they get no row.
    by : str or list of str or None, default=None
        Columns to stratify by (for example ``"concentration"``, or
        ``["plate"]`` to compare with same-plate controls). Control cells are
        matched within each group; ``None`` pools everything.
    replicate : str or list of str or None, default=None
        Columns naming the experimental unit of each cell, for example
        ``["plate", "well"]``. Given, the tests permute whole units (and the
        ``"auc"`` folds keep them whole), so that differences between wells
        are not counted as effects; see :func:`energy_distance_test`. The
        table then also reports ``n_units_treated`` and ``n_units_control``.
        With one well per condition no test can separate the drug from the
        well: cells are then the units (``None``), and the p-value speaks of
        those wells only.
    test : {"energy", "auc"} or None, default="energy"
        Two-sample test: :func:`energy_distance_test` (column
        ``energy_distance``) or :func:`classifier_auc_test` (column ``auc``);
        ``None`` reports centroid distances only.
    n_permutations : int, default=999
        Permutations per test.
    random_state : int, RandomState instance or None, default=None
        Seeds every test (each row gets its own seed drawn from it).
    cv : int or cross-validation splitter, default=5
        Folds of the ``"auc"`` test; treatments or controls with fewer cells
        get NaN statistics.
    return_directions : bool, default=False
        Also return the unit directions of effect.

    Returns
    -------
    effects : pandas.DataFrame
        One row per (group of ``by``, treatment), sorted, with the ``by``
        columns, ``treatment``, then ``n_treated``, ``n_control``,
        ``centroid_distance`` (norm of the centroid difference, in latent
        units), ``relative_distance`` (``centroid_distance`` over the control
        cells' root-mean-square distance to their centroid, comparable across
        embeddings of different scales), the test statistic, ``p_value`` and
        ``q_value`` (Benjamini-Hochberg over the rows of the table).
    directions : pandas.DataFrame
        Only with ``return_directions=True``: one unit vector per row of
        ``effects`` (same index), one column per feature of ``Z`` (its column
        names, else ``z0, z1, ...``). The origin of a direction is the control
        centroid; recompute it with :func:`effect_direction` for projections.

    Raises
    ------
    ValueError
        If a column is missing, the treatment or replicate columns have
        missing values, a unit holds treated and control cells,
        ``control`` is not among the treatments (the message lists those
        present), ``Z`` and ``metadata`` differ in length, or ``test`` is unknown.

    Warns
    -----
    UserWarning
        When some groups of ``by`` have no control cells (their rows hold NaN).

    See Also
    --------
    effect_direction, energy_distance_test, classifier_auc_test

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from cellgen.analysis import drug_effects
    >>> rng = np.random.RandomState(0)
    >>> meta = pd.DataFrame({"compound": ["DMSO"] * 40 + ["taxol"] * 30 + ["aspirin"] * 30})
    >>> z_ref = rng.normal(size=(100, 4))  # the cell shape does not move
    >>> z_struct = rng.normal(size=(100, 4))
    >>> z_struct[40:70, 0] += 3.0  # taxol moves the structure along dimension 0
    >>> struct = drug_effects(z_struct, meta, n_permutations=99, random_state=0)
    >>> struct[["compound", "n_treated", "n_control", "p_value"]]
      compound  n_treated  n_control  p_value
    0  aspirin         30         40     0.53
    1    taxol         30         40     0.01
    >>> ref = drug_effects(z_ref, meta, n_permutations=99, random_state=0)
    >>> bool(ref.loc[ref.compound == "taxol", "p_value"].iloc[0] > 0.05)
    True
    >>> struct, directions = drug_effects(z_struct, meta, test=None, return_directions=True)
    >>> directions.loc[1].abs().idxmax()  # taxol's direction of effect
    'z0'
    """
    if not isinstance(metadata, pd.DataFrame):
        raise TypeError(f"metadata must be a pandas DataFrame, got {type(metadata).__name__}.")
    X = _as_matrix(Z, "Z")
    if len(X) != len(metadata):
        raise ValueError(f"Z has {len(X)} rows but metadata has {len(metadata)}.")
    if test not in _TESTS:
        raise ValueError(f"test must be one of {list(_TESTS)}; got {test!r}.")
    by = [] if by is None else ([by] if isinstance(by, str) else list(by))
    if treatment in by:
        raise ValueError(f"by must not include the treatment column {treatment!r}.")
    _columns(metadata, [treatment], "treatment")
    _columns(metadata, by, "by")
    missing = metadata[treatment].isna().to_numpy()
    if missing.any():
        raise ValueError(f"column {treatment!r} has {int(missing.sum())} missing value(s) (rows "
                         f"{np.flatnonzero(missing)[:5].tolist()}...): every cell needs a "
                         "treatment; drop those cells or name their treatment.")
    rep = [] if replicate is None else (
        [replicate] if isinstance(replicate, str) else list(replicate))
    _columns(metadata, rep, "replicate")
    unit = None
    if rep:
        if metadata[rep].isna().any(axis=None):
            raise ValueError(f"the replicate columns {rep} have missing values; every cell "
                             "needs its unit (well).")
        unit = pd.MultiIndex.from_frame(metadata[rep].astype(object)).factorize()[0]
    labels = metadata[treatment].to_numpy()
    is_control = labels == control
    if not is_control.any():
        present = sorted(pd.unique(metadata[treatment]).tolist(), key=str)
        raise ValueError(f"control {control!r} not found in column {treatment!r}; "
                         f"available values: {present}.")
    n_permutations = _check_count(n_permutations, "n_permutations", 0)
    rng = check_random_state(random_state)
    # Fewer cells (or wells) than folds: no AUC, a NaN row rather than an error.
    min_cells = 1
    if test == "auc":
        min_cells = cv if isinstance(cv, numbers.Integral) else _n_splits(cv)

    rows, vectors, no_control = [], [], []
    keys = metadata[by].reset_index(drop=True) if by else None
    groups = (keys.groupby(by, sort=True, dropna=False).indices.items() if by
              else [((), np.arange(len(X)))])
    for key, idx in groups:
        key = key if isinstance(key, tuple) else (key,)
        control_idx = idx[is_control[idx]]
        C = X[control_idx]
        if len(C):
            origin = C.mean(axis=0)
            spread = float(np.sqrt(((C - origin) ** 2).sum(axis=1).mean()))
        for name in sorted(pd.unique(labels[idx][~is_control[idx]]), key=str):
            treated_idx = idx[labels[idx] == name]
            T = X[treated_idx]
            row = dict(zip(by, key), **{treatment: name}, n_treated=len(T),
                       n_control=len(C), centroid_distance=np.nan,
                       relative_distance=np.nan)
            units = {}
            if unit is not None:
                units = dict(groups_a=unit[treated_idx], groups_b=unit[control_idx])
                row["n_units_treated"] = len(np.unique(units["groups_a"]))
                row["n_units_control"] = len(np.unique(units["groups_b"]))
            if test is not None:
                row["energy_distance" if test == "energy" else "auc"] = np.nan
                row["p_value"] = np.nan
            vector = np.full(X.shape[1], np.nan)
            seed = rng.randint(np.iinfo(np.int32).max)
            if not len(C):
                no_control.append(key)
            else:
                delta = T.mean(axis=0) - origin
                distance = float(np.linalg.norm(delta))
                row["centroid_distance"] = distance
                row["relative_distance"] = distance / spread if spread > 0 else np.nan
                if distance > 0:
                    vector = delta / distance
                smallest = (min(len(T), len(C)) if unit is None else
                            min(row["n_units_treated"], row["n_units_control"]))
                if test == "energy":
                    result = energy_distance_test(T, C, n_permutations=n_permutations,
                                                  random_state=seed, **units)
                    row["energy_distance"], row["p_value"] = result.statistic, result.p_value
                elif test == "auc" and smallest >= min_cells:
                    result = classifier_auc_test(T, C, cv=cv, n_permutations=n_permutations,
                                                 random_state=seed, **units)
                    row["auc"], row["p_value"] = result.statistic, result.p_value
            rows.append(row)
            vectors.append(vector)
    if no_control:
        warnings.warn(f"{len(set(no_control))} group(s) of {by} have no {control!r} cells; "
                      f"their rows hold NaN: {sorted(set(no_control), key=str)[:5]}",
                      UserWarning, stacklevel=2)
    columns = [*by, treatment, "n_treated", "n_control",
               *(["n_units_treated", "n_units_control"] if rep else []),
               "centroid_distance", "relative_distance"]
    if test is not None:
        columns += ["energy_distance" if test == "energy" else "auc", "p_value", "q_value"]
    effects = pd.DataFrame(rows, columns=columns)
    if test is not None:
        p = effects["p_value"].to_numpy(dtype=float)
        q = np.full(len(p), np.nan)
        ok = np.isfinite(p)
        if ok.any():
            q[ok] = false_discovery_control(p[ok], method="bh")
        effects["q_value"] = q
    if not return_directions:
        return effects
    directions = pd.DataFrame(np.reshape(vectors, (len(rows), X.shape[1])),
                              columns=_feature_names(Z, X.shape[1]), index=effects.index)
    return effects, directions
