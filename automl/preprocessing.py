"""Per-family preprocessing, as scikit-learn transformers.

Features arrive as floats plus pandas categoricals with fixed levels (see
``FeatureSchema``). Tree libraries with native categorical support take them
as they are; other trees get integer codes; linear models and k-NN get
imputed, scaled numbers and one-hot categories.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer, make_column_selector
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

MAX_ONE_HOT_LEVELS = 30


def category_codes(X: pd.DataFrame, max_levels: int | None = None) -> pd.DataFrame:
    """Categoricals as float codes, missing as NaN. With ``max_levels``, only
    columns with more levels than that are converted (for libraries that cap
    the number of categories); the rest stay categorical. Other columns are shared with
    ``X``, not copied: a copy of a fold's rows is the size of the data."""
    out = X.copy(deep=False)
    for name in X.columns:
        column = X[name]
        if isinstance(column.dtype, pd.CategoricalDtype):
            if max_levels is None or len(column.cat.categories) > max_levels:
                out[name] = column.cat.codes.astype(float).replace(-1.0, np.nan)
    return out


def codes_encoder(max_levels: int | None = None) -> FunctionTransformer:
    return FunctionTransformer(category_codes, kw_args={"max_levels": max_levels},
                               feature_names_out="one-to-one")


def scaled_one_hot_encoder() -> ColumnTransformer:
    """Median-imputed, standardised numbers (plus missing flags) and one-hot categories."""
    numeric = make_pipeline(SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
                            StandardScaler(copy=False))  # scales the imputer's new matrix in place
    categorical = OneHotEncoder(handle_unknown="infrequent_if_exist", max_categories=MAX_ONE_HOT_LEVELS,
                                sparse_output=False)
    return ColumnTransformer(
        [("numeric", numeric, make_column_selector(dtype_include="number")),
         ("categorical", make_pipeline(FunctionTransformer(_categories_as_text, feature_names_out="one-to-one"),
                                       categorical),
          make_column_selector(dtype_include="category"))],
        remainder="drop",
    )


def _categories_as_text(X: pd.DataFrame) -> np.ndarray:
    """Category values as strings, missing as its own level, for OneHotEncoder."""
    return X.astype(object).where(X.notna(), "<missing>").astype(str).to_numpy()
