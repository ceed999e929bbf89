"""Coupling of a structure to each reference channel (paper, section 4.4, Eq. 4 and 5).

Sign convention
---------------
Eq. 4 divides the cell's own conditional ELBO by the mean ELBO of the same
cell with one reference channel swapped for another cell's. cellgen's ELBOs
are negative (``-(sum of squared errors + KL)``), so the ratio is
``loss(own) / loss(swapped)``:

* ``c < 1``: the swap made the structure *less* likely; the structure's
  placement is coupled to that reference channel, and the lower ``c``, the
  stronger the coupling;
* ``c ≈ 1``: the reference channel is not informative of the structure;
* ``c > 1``: another cell's reference fits better (noise, or no coupling).

Eq. 5 then averages ``(c_m - c_n) / (c_m + c_n)`` over cells, so with these
ratios a *membrane*-coupled structure (``c_m < c_n``) has ``d < 0`` and a
*nucleus*-coupled one ``d > 0``. This is the opposite sign to
:func:`cellgen.datasets.structure_ground_truth`, whose
``differential_coupling`` is written on coupling *strengths* (higher means
more coupled): compare ``d`` with ``-differential_coupling`` there.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.exceptions import NotFittedError
from sklearn.utils import check_random_state

from ..utils import RowView, channel_view, check_images, check_labels
from ._latent import posterior_kl

__all__ = ["structure_coupling", "differential_coupling", "StructureCoupling"]

#: Two-sided 95 % normal quantile for the standard-error interval of ``d``.


def _resolve_model(model):
    """The conditional scorer, the channels it reads from ``X`` and the reference positions.

    Returns ``(scorer, take, ref_pos, ref_channels)``: ``X[:, take]`` is what
    ``scorer.score_samples`` expects, ``ref_pos`` are the reference channels'
    positions in it and ``ref_channels`` their indices in ``X``.
    """
    # Duck-typed (not isinstance) so a sklearn FrozenEstimator wrapper works too.
    if hasattr(model, "structure_model_"):  # a fitted StatisticalCell
        ref = list(model.reference_channels_)
        take = [*ref, model.structure_channel_]
        return model.structure_model_, take, list(range(len(ref))), ref
    if hasattr(model, "reference_channels_") and hasattr(model, "structure_channel_"):
        ref = list(model.reference_channels_)
        return model, None, ref, ref
    # The parameters name the kind of model whether or not it is fitted.
    if not (hasattr(model, "structure_model") or hasattr(model, "structure_channel")):
        if hasattr(model, "steps"):  # a Pipeline
            hint = (" (pass the fitted model at its end, pipe[-1], with the images its "
                    "earlier steps give, pipe[:-1].transform(X))")
        elif hasattr(model, "score_samples"):
            hint = (" (a ReferenceVAE models the reference channels alone; coupling needs "
                    "the structure given the reference)")
        else:
            hint = ""
        raise TypeError("model must be a StatisticalCell or a ConditionalStructureVAE, got "
                        f"{type(model).__name__}{hint}.")
    raise NotFittedError(f"This {type(model).__name__} instance is not fitted yet; call "
                         "'fit' before computing coupling.")


def _resolve_models(model):
    """``_resolve_model`` for one model or each of a list; ``(resolved, several)``.

    Several models (fits of the same data with different seeds, say) must
    read the same reference channels from ``X``, so one swap moves the same
    channel for all of them; a StatisticalCell and a bare structure model
    may be mixed.
    """
    if not isinstance(model, (list, tuple)):
        return [_resolve_model(model)], False
    if len(model) == 0:
        raise ValueError("model is an empty list; pass a fitted model or a list of them.")
    resolved = [_resolve_model(m) for m in model]
    first = resolved[0]
    for k, r in enumerate(resolved[1:], start=1):
        if r[3] != first[3]:
            raise ValueError(
                f"model[{k}] reads reference channels {r[3]} of X but model[0] reads "
                f"{first[3]}; the models must share their reference channels.")
    return resolved, True


def _reference_names(reference_names, ref_channels):
    if reference_names is None:
        return [f"ref{c}" for c in ref_channels]
    names = [str(n) for n in np.atleast_1d(np.asarray(reference_names, dtype=object))]
    if len(names) != len(ref_channels):
        raise ValueError(f"reference_names has {len(names)} name(s) but the model has "
                         f"{len(ref_channels)} reference channel(s) {ref_channels}.")
    if len(set(names)) != len(names):
        raise ValueError(f"reference_names repeat a name: {names}.")
    return names


def _swap_partners(structures, n_swaps, random_state=None, groups=None):
    """Partner cells for the swaps: ``(n_cells, n_swaps)`` indices.

    Every partner of cell ``i`` is tagged with the same structure as ``i`` (and
    is in the same group, when ``groups`` is given) and is never ``i`` itself;
    partners are distinct when the pool has more than ``n_swaps`` other cells.
    Otherwise every other cell is a partner, as evenly as ``n_swaps`` allows
    (counts differ by at most one), so the mean over swaps is Eq. 4's mean over
    the other cells of the structure, exactly when ``n_swaps`` is a multiple of
    their number.
    """
    rng = check_random_state(random_state)
    structures = np.asarray(structures, dtype=object)
    keys = structures if groups is None else pd.MultiIndex.from_arrays(
        [structures, np.asarray(groups, dtype=object)])
    codes, pools = pd.factorize(keys)
    partners = np.empty((len(structures), n_swaps), dtype=np.intp)
    for code, label in enumerate(pools):
        members = np.flatnonzero(codes == code)
        m = len(members)
        if m < 2:
            where = (f"Structure {label!r} is tagged in a single cell" if groups is None else
                     f"Structure {label[0]!r} has a single cell in group {label[1]!r}")
            raise ValueError(f"{where}: its reference channels cannot be swapped with another "
                             "cell of the same structure. Drop it or add cells.")
        for pos, i in enumerate(members):
            if m - 1 >= n_swaps:
                draw = rng.choice(m - 1, size=n_swaps, replace=False)
            else:  # all the others, in a random order, cycled
                draw = np.resize(rng.permutation(m - 1), n_swaps)
            # Skip the cell's own position so it is never its own partner.
            partners[i] = members[draw + (draw >= pos)]
    return partners


def _check_beta(beta, scorer):
    """``None`` or the weight of the KL term in Eq. 3, ``"model"`` read off the scorer."""
    if beta is None:
        return None
    if isinstance(beta, str) and beta == "model":
        # The β the model was trained with (its net's), not the parameter, which
        # set_params may have changed since.
        beta = getattr(getattr(scorer, "net_", None), "beta", getattr(scorer, "beta", None))
    if isinstance(beta, bool) or not isinstance(beta, Real) or not 0.0 <= beta <= 1.0:
        raise ValueError(f'beta must be None, "model" or a number in [0, 1], got {beta!r}.')
    return float(beta)


def _elbo(scorer, X, labels, beta):
    """Per-cell conditional ELBO; with ``beta``, Eq. 3's weighted version."""
    elbo = scorer.score_samples(X, structures=labels)
    if beta is None:
        return elbo
    # score_samples is -(reconstruction + KL); the posterior gives the KL part.
    mu, logvar = scorer.encode(X, structures=labels)
    kl = posterior_kl(mu, logvar).sum(axis=1)
    return -((1.0 - beta) * (-elbo - kl) + beta * kl)


class _Swapped(RowView):
    """``X`` with channel ``pos`` of each cell taken from cell ``partners[i]``.

    Read by rows, so a swap round costs one batch, not a copy of the collection
    (which, for a memory-mapped one, would also read it all into memory).
    """

    def __init__(self, X, pos, partners):
        self.base, self.pos, self.partners = X, int(pos), np.asarray(partners)

    @property
    def shape(self):
        """Shape of ``X``."""
        return tuple(self.base.shape)

    @property
    def dtype(self):
        """Data type of ``X``."""
        return self.base.dtype

    def __getitem__(self, rows):
        if isinstance(rows, (int, np.integer)):
            return self[np.array([rows])][0]
        out = np.array(self.base[rows], copy=True)
        take = np.atleast_1d(self.partners[rows])
        # Partner rows in increasing order read a memory map front to back.
        order = np.argsort(take, kind="stable")
        donors = np.empty_like(out[:, self.pos])
        donors[order] = np.asarray(self.base[take[order]])[:, self.pos]
        out[:, self.pos] = donors
        return np.ascontiguousarray(out)


def _coupling_one_model(scorer, Xc, labels, names, ref_pos, partners, beta):
    """Eq. 4 for one scorer: one row per (cell, reference channel), cells in order."""
    n_cells, n_swaps = partners.shape
    elbo = _elbo(scorer, Xc, labels, beta)
    frames = []
    for name, pos in zip(names, ref_pos):
        swapped = np.empty((n_cells, n_swaps))
        for k in range(n_swaps):
            # One pass per swap round, all cells at once, in the unswapped layout.
            swapped[:, k] = _elbo(scorer, _Swapped(Xc, pos, partners[:, k]), labels, beta)
        elbo_swapped = swapped.mean(axis=1)
        frames.append(pd.DataFrame({
            "cell": np.arange(n_cells), "structure": labels, "reference": name,
            "elbo": elbo, "elbo_swapped": elbo_swapped, "coupling": elbo / elbo_swapped,
        }))
    # Stable on "cell" alone so each cell's rows keep the model's reference order.
    return pd.concat(frames, ignore_index=True).sort_values("cell", kind="stable",
                                                           ignore_index=True)


def structure_coupling(model, X, structures, *, reference_names=None, n_swaps=10,
                       groups=None, beta=None, random_state=None, return_partners=False):
    """Coupling of each cell's structure to each reference channel (the paper's Eq. 4).

    For cell ``i`` and reference channel ``r``, channel ``r`` of ``i`` is
    replaced by channel ``r`` of another cell ``j`` tagged with the same
    structure (``n_swaps`` partners), and the coupling is the ratio of the
    cell's own conditional ELBO to the mean ELBO of the swapped cells::

        c_i^r = ELBO(x_i) / mean_j ELBO(x_i with x_i^r := x_j^r)

    The ELBOs are negative, so ``c < 1`` means that another cell's reference
    fits the structure worse: the structure is coupled to that channel, the
    more the lower ``c``; ``c ≈ 1`` means no coupling.

    Parameters
    ----------
    model : StatisticalCell, ConditionalStructureVAE or list of them
        A fitted model; a StatisticalCell is scored through its
        ``structure_model_``. A list (for example fits of the same cells
        with different ``random_state``) scores every cell with every model,
        on the same swap partners; see Notes.
    X : array-like of shape (n_cells, n_channels, [Z,] Y, X)
        Cells with the channels and shape the model was fitted on.
    structures : array-like of shape (n_cells,)
        Structure label of each cell; swaps stay within a label.
    reference_names : sequence of str or None, default=None
        Names of the reference channels in the model's order, for example
        ``["membrane", "DNA"]`` for :func:`~cellgen.datasets.make_cells`;
        ``None`` gives ``"ref<channel index>"``.
    n_swaps : int, default=10
        Partner cells per cell, drawn without replacement among the other
        cells of the structure (the paper averages over all ``N_s`` of them;
        a sample keeps the cost linear). A structure with ``n_swaps`` or fewer
        other cells uses every one of them, as evenly as ``n_swaps`` allows.
    groups : array-like of shape (n_cells,) or None, default=None
        Optional second key that partners must share, for example the
        cell-cycle phase: Eq. 4 swaps among all cells of a structure, so a
        mitotic cell's DNA may be replaced by an interphase nucleus, which
        measures how the structure depends on the phase the DNA reveals as
        much as its coupling within the phase. ``None`` follows Eq. 4. Cells
        whose group is missing (NaN or None) form a group of their own.
    beta : None, "model" or float in [0, 1], default=None
        Which ELBO the ratio is taken of, the same in numerator and denominator.
        ``None``: the unweighted ELBO ``-(reconstruction + KL)``, the bound on
        ``log p(x_s | x_r, label)`` that ``score_samples`` returns. A float:
        the paper's Eq. 3, ``-((1 - beta) * reconstruction + beta * KL)``;
        ``"model"`` takes the fitted model's own ``beta``, Eq. 4 read
        literally. ``beta=0.5`` gives the same ratios as ``None``.
    random_state : int, RandomState instance or None, default=None
        Seeds the choice of partners.
    return_partners : bool, default=False
        Also return the partner indices.

    Returns
    -------
    coupling : pandas.DataFrame
        One row per (cell, reference channel) with columns ``cell`` (row of
        ``X``), ``structure``, ``reference``, ``elbo`` (the cell's own
        conditional ELBO, weighted by ``beta`` when given), ``elbo_swapped``
        (mean over the swaps) and ``coupling`` (their ratio). With a list of
        models, one row per (model, cell, reference channel) and a first
        column ``model``, the model's position in the list.
    partners : ndarray of shape (n_cells, n_swaps)
        Row indices of the partner cells, the same for every reference
        channel; only with ``return_partners=True``.

    Raises
    ------
    NotFittedError
        If ``model`` is not fitted.
    ValueError
        If a structure is tagged in a single cell, ``reference_names`` does
        not match the reference channels, ``beta`` is not None, "model" or
        a number in [0, 1], or the models of a list read different channels.

    See Also
    --------
    differential_coupling : Eq. 5, per structure (and phase).
    StructureCoupling : The same as a scikit-learn transformer.

    Notes
    -----
    Every swapped batch shares the layout of the unswapped one, so each cell
    meets the same seeded draws of ``z`` in numerator and denominator (common
    random numbers): the ratio reflects the swap, not the sampling noise.

    Weak couplings depend on the fit as much as on the cells: when two
    reference channels carry nearly the same information about a structure
    (a mitotic cell's DNA sits at the cell's centre), one fit may read it
    from the membrane and another from the DNA, and Eq. 4 follows the fit.
    The interval of :func:`differential_coupling` covers only the spread
    over cells; pass several fits as a list to see the spread between fits
    too (``differential_coupling`` then averages each cell's coupling over
    the models and reports how far the models disagree).

    Examples
    --------
    >>> from cellgen import ConditionalStructureVAE
    >>> from cellgen.analysis import structure_coupling
    >>> from cellgen.datasets import make_cells
    >>> X, y, meta = make_cells(32, shape=(16, 16), random_state=0)
    >>> model = ConditionalStructureVAE(n_latent=2, widths=(8,), max_epochs=1, batch_size=8,
    ...                                 random_state=0).fit(X, y)
    >>> c = structure_coupling(model, X, y, reference_names=["membrane", "DNA"],
    ...                        n_swaps=2, random_state=0)
    >>> c.shape
    (64, 6)
    >>> sorted(c["reference"].unique())
    ['DNA', 'membrane']

    Two fits that differ only in their seed, scored against the same partners:

    >>> other = ConditionalStructureVAE(n_latent=2, widths=(8,), max_epochs=1, batch_size=8,
    ...                                 random_state=1).fit(X, y)
    >>> both = structure_coupling([model, other], X, y, reference_names=["membrane", "DNA"],
    ...                           n_swaps=2, random_state=0)
    >>> both.shape
    (128, 7)
    >>> both["model"].unique().tolist()
    [0, 1]
    """
    resolved, several = _resolve_models(model)
    ref_channels = resolved[0][3]
    if not isinstance(n_swaps, Integral) or isinstance(n_swaps, bool) or n_swaps < 1:
        raise ValueError(f"n_swaps must be a positive integer, got {n_swaps!r}.")
    names = _reference_names(reference_names, ref_channels)
    betas = [_check_beta(beta, r[0]) for r in resolved]
    X = check_images(X)
    labels = check_labels(structures, X.shape[0], name="structures")
    if groups is not None:
        groups = np.asarray(groups, dtype=object)
        if groups.shape != (X.shape[0],):
            raise ValueError(f"groups must hold one value per cell ({X.shape[0]}), got shape "
                             f"{groups.shape}.")
    partners = _swap_partners(labels, int(n_swaps), random_state, groups)

    frames = []
    for index, ((scorer, take, ref_pos, _), b) in enumerate(zip(resolved, betas)):
        Xc = X if take is None else channel_view(X, take)
        frame = _coupling_one_model(scorer, Xc, labels, names, ref_pos, partners, b)
        if several:
            frame.insert(0, "model", index)
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True)
    return (out, partners) if return_partners else out


def differential_coupling(coupling, *, membrane="membrane", nucleus="DNA", by=("structure",),
                          metadata=None):
    """Differential coupling to membrane vs nucleus per group (the paper's Eq. 5).

    ``d = mean_i (c_i^m - c_i^n) / (c_i^m + c_i^n)`` over the cells of each
    group, with ``c`` from :func:`structure_coupling`. Because ``c < 1`` marks
    coupling (the ELBOs are negative), ``d < 0`` means the structure is
    coupled more to the membrane and ``d > 0`` more to the nucleus.

    Parameters
    ----------
    coupling : pandas.DataFrame
        Output of :func:`structure_coupling` (columns ``cell``, ``reference``
        and ``coupling``, plus any ``by`` columns it holds). With a ``model``
        column (several models), each cell's coupling is first averaged over
        the models.
    membrane : str, default="membrane"
        Name of the membrane reference channel in ``coupling["reference"]``.
    nucleus : str, default="DNA"
        Name of the nuclear reference channel.
    by : str or sequence of str, default=("structure",)
        Columns to group by, from ``coupling`` or ``metadata``, for example
        ``("structure", "cell_cycle_phase")``; empty pools all cells.
    metadata : pandas.DataFrame or None, default=None
        One row per cell, in the order of ``X`` (row ``k`` describes
        ``cell == k``), for example the metadata of
        :func:`~cellgen.datasets.make_cells`.

    Returns
    -------
    d : pandas.DataFrame
        One row per group: the ``by`` columns, ``n_cells``, ``c_membrane``
        and ``c_nucleus`` (mean couplings), ``differential_coupling`` (Eq. 5),
        its standard error ``sem`` and a 95 % Student's t interval ``ci_low``,
        ``ci_high`` (NaN for a single cell). With several models, also
        ``n_models``, ``sd_between_models`` (standard deviation over the
        models of each model's own ``d``; the interval above does not include
        it) and ``sign_agreement`` (the fraction of models whose own ``d``
        has the sign of the averaged one).

    Raises
    ------
    ValueError
        If ``membrane`` or ``nucleus`` is not a reference in ``coupling``, a
        ``by`` column is missing, or ``metadata`` has fewer rows than cells.

    See Also
    --------
    structure_coupling : Eq. 4, per cell and reference channel.

    Examples
    --------
    >>> import pandas as pd
    >>> from cellgen.analysis import differential_coupling
    >>> c = pd.DataFrame({"cell": [0, 0, 1, 1], "structure": ["a"] * 4,
    ...                   "reference": ["membrane", "DNA"] * 2,
    ...                   "coupling": [0.5, 1.0, 0.5, 1.0]})
    >>> round(differential_coupling(c)["differential_coupling"].item(), 4)
    -0.3333
    """
    if not isinstance(coupling, pd.DataFrame):
        raise TypeError(f"coupling must be a pandas DataFrame, got {type(coupling).__name__}.")
    missing = {"cell", "reference", "coupling"} - set(coupling.columns)
    if missing:
        raise ValueError(f"coupling lacks column(s) {sorted(missing)}; pass the output of "
                         "structure_coupling.")
    known = list(pd.unique(coupling["reference"]))
    for arg, name in (("membrane", membrane), ("nucleus", nucleus)):
        if name not in known:
            raise ValueError(f"{arg}={name!r} is not a reference channel of coupling; "
                             f"known: {known}. Pass {arg}= one of them, or name the "
                             "channels when computing the coupling: "
                             "structure_coupling(..., reference_names=['membrane', 'DNA']).")
    by = [by] if isinstance(by, str) else list(by)
    several = "model" in coupling.columns
    if several and "model" in by:
        raise ValueError('by must not hold "model": the models are averaged over; '
                         "select one model's rows for that model's d.")
    index = ["model", "cell"] if several else ["cell"]
    # Not pivot_table: it drops a reference (or a cell) whose couplings are all NaN,
    # for example cells that had no swap partner.
    wide = (coupling.groupby(index + ["reference"], sort=True, observed=True)["coupling"]
            .first().unstack("reference").reindex(columns=[membrane, nucleus])
            .reset_index())
    per_model = pd.DataFrame({**{k: wide[k].to_numpy() for k in index},
                              "c_membrane": wide[membrane].to_numpy(dtype=float),
                              "c_nucleus": wide[nucleus].to_numpy(dtype=float)})
    cells = (per_model.groupby("cell", as_index=False)[["c_membrane", "c_nucleus"]].mean()
             if several else per_model)
    keys = _group_keys(coupling, cells["cell"].to_numpy(), by, metadata)
    cells = cells.merge(keys, on="cell")

    def ratio(frame):
        return ((frame["c_membrane"] - frame["c_nucleus"])
                / (frame["c_membrane"] + frame["c_nucleus"]))

    cells["d"] = ratio(cells)
    group = by if by else (lambda _: "all")
    out = cells.groupby(group, sort=True, dropna=False).agg(
        n_cells=("d", "size"), c_membrane=("c_membrane", "mean"),
        c_nucleus=("c_nucleus", "mean"), differential_coupling=("d", "mean"),
        sem=("d", "sem"))
    # Student's t, not the normal 1.96: groups of a few cells (mitotic ones) are common.
    half = stats.t.ppf(0.975, out["n_cells"].to_numpy() - 1) * out["sem"].to_numpy()
    out["ci_low"] = out["differential_coupling"] - half
    out["ci_high"] = out["differential_coupling"] + half
    if several:
        per_model = per_model.merge(keys, on="cell").assign(d=ratio)
        if by:
            d_models = per_model.groupby(["model", *by], sort=True, dropna=False)["d"].mean()
            d_models = d_models.unstack("model")
        else:
            d_models = per_model.groupby("model")["d"].mean().to_frame("all").T
        d_models = d_models.reindex(out.index)
        ensemble = np.sign(out["differential_coupling"].to_numpy())[:, None]
        out["n_models"] = d_models.shape[1]
        out["sd_between_models"] = d_models.std(axis=1, ddof=1)
        out["sign_agreement"] = (np.sign(d_models.to_numpy()) == ensemble).mean(axis=1)
    return out.reset_index(drop=not by)


def _group_keys(coupling, cell_ids, by, metadata):
    """One row per cell: ``cell`` and the ``by`` columns, from ``coupling`` or ``metadata``."""
    keys = pd.DataFrame({"cell": cell_ids})
    own = [b for b in by if b in coupling.columns and b not in ("cell", "reference", "model")]
    if own:
        keys = keys.merge(coupling.drop_duplicates("cell")[["cell", *own]], on="cell")
    rest = [b for b in by if b not in own]
    if rest:
        if metadata is None:
            raise ValueError(f"by column(s) {rest} are not in coupling; pass metadata "
                             "holding them.")
        absent = [b for b in rest if b not in metadata.columns]
        if absent:
            raise ValueError(f"by column(s) {absent} are in neither coupling nor metadata.")
        if keys["cell"].max() >= len(metadata):
            raise ValueError(f"metadata has {len(metadata)} rows but coupling refers to cell "
                             f"{keys['cell'].max()}.")
        keys = keys.assign(**{b: metadata[b].to_numpy()[keys["cell"].to_numpy()]
                              for b in rest})
    return keys


class StructureCoupling(TransformerMixin, BaseEstimator):
    """Per-cell coupling to each reference channel, as a scikit-learn transformer.

    Wraps :func:`structure_coupling`: ``transform`` returns one column of
    Eq. 4 couplings per reference channel (``c < 1`` means coupled).

    Parameters
    ----------
    model : StatisticalCell, ConditionalStructureVAE or list of them
        A fitted model, or several whose couplings are averaged per cell.
        :func:`sklearn.base.clone` would return an unfitted copy of a model;
        wrap it in :class:`sklearn.frozen.FrozenEstimator` to keep it fitted
        through cloning (grid searches, pipelines).
    n_swaps : int, default=10
        Partner cells per cell.
    random_state : int, RandomState instance or None, default=None
        Seeds the choice of partners.
    reference_names : sequence of str or None, default=None
        Names of the reference channels; ``None`` gives ``"ref<channel>"``.
    beta : None, "model" or float in [0, 1], default=None
        Which ELBO the ratio is taken of; see :func:`structure_coupling`.

    Attributes
    ----------
    reference_names_ : list of str
        Names of the reference channels, one per output column.
    n_features_out_ : int
        Number of reference channels.

    See Also
    --------
    structure_coupling : The tidy per-cell table with the ELBOs.

    Examples
    --------
    >>> from cellgen import ConditionalStructureVAE
    >>> from cellgen.analysis import StructureCoupling
    >>> from cellgen.datasets import make_cells
    >>> X, y, meta = make_cells(32, shape=(16, 16), random_state=0)
    >>> model = ConditionalStructureVAE(n_latent=2, widths=(8,), max_epochs=1, batch_size=8,
    ...                                 random_state=0).fit(X, y)
    >>> sc = StructureCoupling(model, n_swaps=2, random_state=0,
    ...                        reference_names=["membrane", "DNA"]).fit(X)
    >>> sc.transform(X, structures=y).shape
    (32, 2)
    >>> sc.get_feature_names_out().tolist()
    ['coupling_membrane', 'coupling_DNA']
    """

    def __init__(self, model, *, n_swaps=10, random_state=None, reference_names=None,
                 beta=None):
        self.model = model
        self.n_swaps = n_swaps
        self.random_state = random_state
        self.reference_names = reference_names
        self.beta = beta

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False  # images, not a table
        return tags

    def fit(self, X, y=None, *, structures=None):
        """Check that the model is fitted and record the reference channel names.

        Parameters
        ----------
        X : array-like of shape (n_cells, n_channels, [Z,] Y, X)
            Ignored apart from validation; nothing is learned.
        y : None or array-like of shape (n_cells,)
            Ignored.
        structures : None or array-like of shape (n_cells,)
            Ignored; accepted so that a pipeline can route the labels to every
            step.

        Returns
        -------
        self : StructureCoupling
            The fitted transformer.
        """
        check_images(X)
        resolved, _ = _resolve_models(self.model)
        for scorer, *_ in resolved:
            _check_beta(self.beta, scorer)
        ref_channels = resolved[0][3]
        self.reference_names_ = _reference_names(self.reference_names, ref_channels)
        self.n_features_out_ = len(self.reference_names_)
        return self

    def fit_transform(self, X, y=None, *, structures=None):
        """Fit, then return the coupling of each cell; the labels are ``structures`` or ``y``.

        Parameters
        ----------
        X : array-like of shape (n_cells, n_channels, [Z,] Y, X)
            Cells with the channels and shape the model was fitted on.
        y : array-like of shape (n_cells,) or None
            Structure labels (used when ``structures`` is None).
        structures : array-like of shape (n_cells,) or None, default=None
            Structure labels, taking precedence over ``y``.

        Returns
        -------
        C : ndarray of shape (n_cells, n_reference_channels)
            As :meth:`transform`.
        """
        labels = structures if structures is not None else y
        return self.fit(X).transform(X, structures=labels)

    def transform(self, X, structures=None):
        """Coupling of each cell to each reference channel.

        Parameters
        ----------
        X : array-like of shape (n_cells, n_channels, [Z,] Y, X)
            Cells with the channels and shape the model was fitted on.
        structures : array-like of shape (n_cells,)
            Structure label of each cell (required).

        Returns
        -------
        C : ndarray of shape (n_cells, n_reference_channels)
            Eq. 4 coupling per cell and reference channel (the mean over the
            models when ``model`` is a list).
        """
        if not hasattr(self, "reference_names_"):
            raise NotFittedError("This StructureCoupling instance is not fitted yet; call "
                                 "'fit' first.")
        if structures is None:
            raise ValueError("StructureCoupling.transform needs the structure label of each "
                             "cell: pass structures=... (in a pipeline, route it with "
                             "set_transform_request(structures=True)).")
        frame = structure_coupling(self.model, X, structures,
                                   reference_names=self.reference_names_,
                                   n_swaps=self.n_swaps, beta=self.beta,
                                   random_state=self.random_state)
        wide = frame.pivot_table(index="cell", columns="reference", values="coupling",
                                 aggfunc="mean")
        return wide[self.reference_names_].to_numpy()

    def get_feature_names_out(self, input_features=None):
        """Output column names, ``coupling_<reference name>``.

        Parameters
        ----------
        input_features : None
            Ignored; present for scikit-learn API compatibility.

        Returns
        -------
        names : ndarray of str
            One name per reference channel.
        """
        if not hasattr(self, "reference_names_"):
            raise NotFittedError("This StructureCoupling instance is not fitted yet; call "
                                 "'fit' first.")
        return np.asarray([f"coupling_{n}" for n in self.reference_names_], dtype=object)
