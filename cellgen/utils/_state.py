"""Keeping an estimator as it was when a refit fails."""

from __future__ import annotations

import functools


def unchanged_on_failure(fit=None, *, keep=None):
    """Decorate ``fit`` so that a failed fit leaves the estimator as it was.

    ``fit`` records the new data's description (channels, shape, classes)
    before its later checks or its training; if those then fail, the fitted
    attributes must not describe data the estimator was never fitted on.
    ``keep(before, estimator)``, when given, says whether the failed fit's new
    state is kept all the same (a model that trained for a while, say).
    """
    if fit is None:
        return functools.partial(unchanged_on_failure, keep=keep)

    @functools.wraps(fit)
    def wrapper(self, *args, **kwargs):
        before = dict(self.__dict__)
        try:
            return fit(self, *args, **kwargs)
        except BaseException:
            if keep is None or not keep(before, self):
                self.__dict__.clear()
                self.__dict__.update(before)
            raise
    return wrapper
