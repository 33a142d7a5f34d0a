"""Real trained models of each family a data scientist brings, fitted the
way they would be in a notebook (fixed seeds, small generated data), each
with the data its notebook would predict on."""
import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (GradientBoostingClassifier, HistGradientBoostingClassifier,
                              RandomForestClassifier)
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

RNG_SEED = 0
COLORS = ["blue", "green", "red"]
CITIES = ["Lisbon", "Oslo", "Paris", "Rome"]


def customers(n=200, seed=RNG_SEED):
    """A DataFrame with string categories and numbers, and a churn label."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "color": rng.choice(COLORS, n),
        "city": rng.choice(CITIES, n),
        "age": rng.integers(18, 90, n).astype(float),
        "income": rng.normal(50_000, 15_000, n).round(2),
    })
    score = (frame["color"] == "red") * 1.0 + (frame["age"] > 50) + rng.normal(0, 0.5, n)
    return frame, np.where(score > 1.0, "churn", "stay")


def tabular_pipeline():
    X, y = customers()
    model = Pipeline([
        ("prepare", ColumnTransformer([
            ("categories", OneHotEncoder(), ["color", "city"]),
            ("numbers", StandardScaler(), ["age", "income"]),
        ])),
        ("classify", LogisticRegression(max_iter=1000)),
    ]).fit(X, y)
    return model, X.head(12)


TEXTS = ["great product, works well", "terrible, broke after a day", "love it",
         "waste of money", "excellent value and quality", "awful support, never again",
         "would buy again", "does not work at all"] * 5
TEXT_LABELS = ["pos", "neg", "pos", "neg", "pos", "neg", "pos", "neg"] * 5


def text_pipeline():
    model = make_pipeline(TfidfVectorizer(), LogisticRegression()).fit(TEXTS, TEXT_LABELS)
    return model, ["works great, love it", "broke, awful", "  spaces, commas and \"quotes\" ",
                   "emoji ☕ and accents: café"]


def hist_gradient_boosting_categorical():
    X, y = customers()
    X = X.copy()
    X["color"] = X["color"].astype("category")
    X["city"] = X["city"].astype("category")
    X.loc[X.index[::7], "income"] = np.nan
    model = HistGradientBoostingClassifier(categorical_features="from_dtype", max_iter=20,
                                           random_state=RNG_SEED).fit(X, y)
    notebook = X.head(12).copy()
    return model, notebook


def multiclass_gradient_boosting():
    rng = np.random.default_rng(RNG_SEED)
    X = rng.normal(size=(150, 4))
    y = np.array(["a", "b", "c"])[np.argmax(X[:, :3], axis=1)]
    model = GradientBoostingClassifier(n_estimators=20, random_state=RNG_SEED).fit(X, y)
    return model, X[:12]


def multilabel_forest():
    rng = np.random.default_rng(RNG_SEED)
    X = rng.normal(size=(120, 5))
    Y = np.column_stack([X[:, 0] > 0, X[:, 1] > 0, X[:, 0] + X[:, 2] > 0]).astype(int)
    model = RandomForestClassifier(n_estimators=10, random_state=RNG_SEED).fit(X, Y)
    return model, X[:12]


def clustering_pipeline():
    rng = np.random.default_rng(RNG_SEED)
    X = np.vstack([rng.normal(c, 0.5, size=(40, 3)) for c in (0, 5, 10)])
    model = make_pipeline(StandardScaler(), KMeans(n_clusters=3, n_init=3,
                                                   random_state=RNG_SEED)).fit(X)
    return model, X[:12]


def log1p_ridge():
    rng = np.random.default_rng(RNG_SEED)
    X = rng.uniform(0, 100, size=(80, 2))
    y = np.log1p(X[:, 0]) * 2 + np.log1p(X[:, 1])
    model = make_pipeline(FunctionTransformer(np.log1p), Ridge()).fit(X, y)
    return model, X[:12]


def imputed_string_pipeline():
    """A string column with missing values, imputed then one-hot encoded:
    the notebook's DataFrame holds NaN where a city is unknown."""
    from sklearn.impute import SimpleImputer
    X, y = customers()
    X = X.copy()
    X.loc[X.index % 7 == 3, "city"] = np.nan
    model = Pipeline([
        ("prepare", ColumnTransformer([
            ("categories", make_pipeline(SimpleImputer(strategy="most_frequent"),
                                         OneHotEncoder(handle_unknown="ignore")), ["color", "city"]),
            ("numbers", StandardScaler(), ["age", "income"]),
        ])),
        ("classify", LogisticRegression(max_iter=1000)),
    ]).fit(X, y)
    return model, X.head(12)
