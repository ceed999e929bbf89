"""scikit-learn estimators of the Statistical Cell."""

from ._conditional import ConditionalStructureVAE
from ._reference import ReferenceVAE
from ._statistical_cell import StatisticalCell

__all__ = ["ReferenceVAE", "ConditionalStructureVAE", "StatisticalCell"]
