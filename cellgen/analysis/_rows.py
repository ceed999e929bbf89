"""Pairing the rows of two labelled inputs."""

from __future__ import annotations

import pandas as pd


def _align_rows(first, second, first_name: str, second_name: str):
    """``second`` in the row order of ``first`` when both are labelled by a pandas index.

    Two pandas objects are paired by label, as pandas itself would: ``second``
    is reordered when its index holds the same unique labels in another order;
    an index with other labels raises, since pairing by position would then
    mismatch rows silently. Anything without an index is returned unchanged
    (paired by position).
    """
    a, b = getattr(first, "index", None), getattr(second, "index", None)
    if not isinstance(a, pd.Index) or not isinstance(b, pd.Index) or a.equals(b):
        return second
    if a.is_unique and b.is_unique and len(a) == len(b):
        where = b.get_indexer(a)
        if (where >= 0).all():
            return second.iloc[where]
    raise ValueError(
        f"{first_name} and {second_name} are both labelled by a pandas index, and the "
        "labels differ; align them (for example with .loc), or pass plain arrays to pair "
        "rows by position."
    )
