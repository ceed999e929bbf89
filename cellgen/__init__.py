"""cellgen: the Statistical Cell as scikit-learn estimators.

Learn a compact space of cell and nuclear shape, learn where each subcellular
structure sits given that shape, generate cells, impute structures that were
never imaged, and score how typical a cell is.
"""

__version__ = "0.1.0"

__all__ = ["ReferenceVAE", "ConditionalStructureVAE", "StatisticalCell", "__version__"]


def __getattr__(name):
    # Imported on first use so that light subpackages (datasets, plotting)
    # load without importing torch.
    if name in ("ReferenceVAE", "ConditionalStructureVAE", "StatisticalCell"):
        from . import estimators

        return getattr(estimators, name)
    raise AttributeError(f"module 'cellgen' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
