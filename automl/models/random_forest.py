"""scikit-learn's random forest."""

from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

from automl.models._forest import ForestFamily


class RandomForestFamily(ForestFamily):
    name = "random_forest"
    classifier = RandomForestClassifier
    regressor = RandomForestRegressor
