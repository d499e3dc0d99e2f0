"""Model families, one module each; this registry is the only place that lists them.

Adding a family: write ``automl/models/<name>.py`` with a ``ModelFamily``
subclass, and add it to ``_FAMILIES`` below.
"""

from automl.models.base import ModelFamily
from automl.models.extra_trees import ExtraTreesFamily
from automl.models.hist_gradient_boosting import HistGradientBoostingFamily
from automl.models.knn import KNNFamily
from automl.models.lightgbm import LightGBMFamily
from automl.models.linear import LinearFamily
from automl.models.mlp import MLPFamily
from automl.models.random_forest import RandomForestFamily

_FAMILIES: dict[str, ModelFamily] = {
    family.name: family
    for family in (LightGBMFamily(), HistGradientBoostingFamily(), LinearFamily(), ExtraTreesFamily(),
                   RandomForestFamily(), KNNFamily(), MLPFamily())
}
"""In the order their default configurations are tried: cheap and strong first."""


def family_names() -> list[str]:
    return list(_FAMILIES)


def get_family(name: str) -> ModelFamily:
    return _FAMILIES[name]


__all__ = ["ModelFamily", "family_names", "get_family"]
