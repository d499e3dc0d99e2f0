"""Model families, one module each; this registry is the only place that lists them.

Adding a family: write ``automl/models/<name>.py`` with a ``ModelFamily``
subclass, and add it to ``_FAMILIES`` below. A family's module (and its
library: torch, LightGBM, ...) is imported only when the family is used, so
checking a spec or a command line stays fast.
"""

from functools import cache
from importlib import import_module

from automl.models.base import ModelFamily

_FAMILIES: dict[str, str] = {
    "lightgbm": "automl.models.lightgbm:LightGBMFamily",
    "hist_gradient_boosting": "automl.models.hist_gradient_boosting:HistGradientBoostingFamily",
    "linear": "automl.models.linear:LinearFamily",
    "extra_trees": "automl.models.extra_trees:ExtraTreesFamily",
    "random_forest": "automl.models.random_forest:RandomForestFamily",
    "knn": "automl.models.knn:KNNFamily",
    "mlp": "automl.models.mlp:MLPFamily",
}
"""Name -> "module:class", in the order their default configurations are tried: cheap and strong first."""


def family_names() -> list[str]:
    return list(_FAMILIES)


@cache
def get_family(name: str) -> ModelFamily:
    module, cls = _FAMILIES[name].split(":")
    return getattr(import_module(module), cls)()


__all__ = ["ModelFamily", "family_names", "get_family"]
