"""scikit-learn's extremely randomised trees."""

from sklearn.ensemble import ExtraTreesClassifier, ExtraTreesRegressor

from automl.models._forest import ForestFamily


class ExtraTreesFamily(ForestFamily):
    name = "extra_trees"
    classifier = ExtraTreesClassifier
    regressor = ExtraTreesRegressor
    relative_cost = 2.0
    seconds_per_cell = 28e-6  # 13-28 us measured (see ModelFamily)
