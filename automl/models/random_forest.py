"""scikit-learn's random forest."""

from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

from automl.models._forest import ForestFamily


class RandomForestFamily(ForestFamily):
    name = "random_forest"
    classifier = RandomForestClassifier
    regressor = RandomForestRegressor
    seconds_per_cell = 47e-6  # 19-47 us measured (see ModelFamily)
