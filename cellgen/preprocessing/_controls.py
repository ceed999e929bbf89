"""Control structures: fake structure channels whose coupling to the cell is known."""

from __future__ import annotations

from numbers import Real

import numpy as np
from skimage.filters import threshold_otsu
from sklearn.utils import check_random_state

from ..utils import check_channel_index, check_images, check_labels

__all__ = ["add_control_structures"]

#: Control name -> structure label (the names of ``cellgen.datasets.STRUCTURES``).
CONTROL_LABELS = {
    "blank": "control_blank",
    "dna": "control_dna",
    "membrane": "control_membrane",
    "noise": "control_noise",
    "random": "control_random",
}


def _region(membrane: np.ndarray, dna: np.ndarray, threshold) -> np.ndarray:
    """Cell-or-nucleus mask of one cell: either reference channel above its threshold."""
    masks = []
    for channel in (membrane, dna):
        t = threshold_otsu(channel.ravel()) if threshold is None else threshold
        masks.append(channel > t)
    return masks[0] | masks[1]


def add_control_structures(X, y=None, *, membrane_channel=0, dna_channel=1, structure_channel=-1,
                           controls=("blank", "dna", "membrane", "noise", "random"),
                           structure_name="structure", threshold=None, include_original=True,
                           random_state=None):
    """Add copies of every cell whose structure channel is a control of known coupling.

    The Statistical Cell (Table 1) validates its coupling estimates on controls:
    "instead of a normal GFP structure channel we present to the model either
    a blank channel as a structure, duplicated membrane and DNA channels,
    random Gaussian noise in the membrane and DNA regions, or copy a random
    structure channel from a different cell". A model should find a copy of the
    DNA fully coupled to the nucleus, a copy of the membrane fully coupled to
    the cell, and a blank or a random other cell's structure coupled to
    neither; anything else points to a problem in the model or the data.

    This is a function, not a transformer, because it changes the number of
    cells and the labels, which a scikit-learn ``Pipeline`` step cannot do.
    Apply it after normalization and alignment, before fitting.

    Parameters
    ----------
    X : array-like of shape (n_cells, n_channels, [Z,] Y, X)
        Images with a membrane (or cell body), a DNA and a structure channel,
        normalized to about [0, 1].
    y : array-like of shape (n_cells,) or None, default=None
        Structure label of each cell, kept for the original cells. ``None``
        labels them all ``structure_name``.
    membrane_channel : int, default=0
        Index of the membrane (cell body) channel.
    dna_channel : int, default=1
        Index of the DNA (nucleus) channel.
    structure_channel : int, default=-1
        Index of the channel that each control replaces.
    controls : sequence of str, default=("blank", "dna", "membrane", "noise", "random")
        Controls to add, in this order: ``"blank"`` (zeros), ``"dna"`` (a copy
        of the DNA channel), ``"membrane"`` (a copy of the membrane channel),
        ``"noise"`` (noise in the cell and nucleus regions, zero outside) and
        ``"random"`` (the structure channel of a random other cell).
    structure_name : str, default="structure"
        Label of the original cells when ``y`` is None.
    threshold : float or None, default=None
        Intensity above which a membrane or DNA pixel belongs to the region
        filled by ``"noise"``. ``None``: Otsu's threshold, per cell and channel.
    include_original : bool, default=True
        Whether the output starts with the original cells.
    random_state : int, RandomState instance or None, default=None
        Seed for the noise and for the choice of the other cells.

    Returns
    -------
    X_out : ndarray of float32 of shape (n_out, n_channels, [Z,] Y, X)
        The original cells (if ``include_original``), then one block of
        ``n_cells`` copies per control, in the order of ``controls``;
        ``n_out = n_cells * (len(controls) + include_original)``.
    y_out : ndarray of object of shape (n_out,)
        Labels: ``y`` (or ``structure_name``) for the originals, then
        ``"control_blank"``, ``"control_dna"``, ``"control_membrane"``,
        ``"control_noise"``, ``"control_random"`` (the names used by
        :data:`cellgen.datasets.STRUCTURES`).
    source : ndarray of int of shape (n_out,)
        Index of the input cell each output row was made from (for
        ``"random"``, the cell whose reference channels it keeps).

    Raises
    ------
    ValueError
        For an unknown control name, a structure channel that is also the
        membrane or DNA channel, or ``"random"`` with a single cell.

    Notes
    -----
    The noise is half-normal, ``|N(0, s)|`` with ``s = m / 3``, clipped to
    ``[0, m]``, where ``m`` is the largest structure-channel value over all
    input cells (1 for normalized images; 1 if the structure channel is all
    zeros). It fills the union of the membrane and DNA regions, so like the
    paper's control it depends on both reference channels equally. For
    ``"random"``, every cell gets the structure of another cell drawn uniformly,
    never itself.

    Examples
    --------
    >>> import numpy as np
    >>> from cellgen.preprocessing import add_control_structures
    >>> X = np.random.RandomState(0).rand(4, 3, 8, 8)
    >>> X_out, y_out, source = add_control_structures(X, controls=("blank", "dna"),
    ...                                               random_state=0)
    >>> X_out.shape
    (12, 3, 8, 8)
    >>> y_out[[0, 4, 8]].tolist()
    ['structure', 'control_blank', 'control_dna']
    >>> source.tolist()
    [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3]
    >>> bool(np.array_equal(X_out[8:, 2], X_out[8:, 1]))
    True
    """
    X = check_images(X, min_channels=2)
    n, n_channels = X.shape[:2]
    mem = check_channel_index(membrane_channel, n_channels, "membrane_channel")
    dna = check_channel_index(dna_channel, n_channels, "dna_channel")
    struct = check_channel_index(structure_channel, n_channels, "structure_channel")
    if struct in (mem, dna):
        raise ValueError(
            f"structure_channel ({struct}) must differ from membrane_channel ({mem}) and "
            f"dna_channel ({dna}): the controls replace it and read the other two."
        )
    controls = (controls,) if isinstance(controls, str) else tuple(dict.fromkeys(controls))
    unknown = [c for c in controls if c not in CONTROL_LABELS]
    if unknown:
        raise ValueError(f"Unknown controls {unknown}; valid controls are "
                         f"{list(CONTROL_LABELS)}.")
    if not controls and not include_original:
        raise ValueError("Nothing to return: no controls and include_original=False.")
    if "random" in controls and n < 2:
        raise ValueError("The 'random' control copies the structure of another cell, so X "
                         f"needs at least 2 cells; got {n}.")
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, Real)):
        raise TypeError(f"threshold must be a number or None, got {threshold!r}.")
    labels = (np.full(n, structure_name, dtype=object) if y is None
              else np.asarray(check_labels(y, n), dtype=object))
    rng = check_random_state(random_state)

    blocks, names = ([X], [labels]) if include_original else ([], [])
    for control in controls:
        block = X.copy()
        target = block[:, struct]
        if control == "blank":
            target[...] = 0.0
        elif control in ("dna", "membrane"):
            target[...] = X[:, dna if control == "dna" else mem]
        elif control == "noise":
            peak = float(X[:, struct].max())
            peak = peak if peak > 0 else 1.0
            for i in range(n):
                noise = np.abs(rng.standard_normal(X.shape[2:])) * (peak / 3.0)
                np.minimum(noise, peak, out=noise)
                target[i] = np.where(_region(X[i, mem], X[i, dna], threshold), noise, 0.0)
        else:  # random: an offset in 1..n-1 never lands on the cell itself
            others = (np.arange(n) + rng.randint(1, n, size=n)) % n
            target[...] = X[others, struct]
        blocks.append(block)
        names.append(np.full(n, CONTROL_LABELS[control], dtype=object))
    source = np.tile(np.arange(n), len(blocks))
    return np.concatenate(blocks), np.concatenate(names), source
