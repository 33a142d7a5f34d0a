"""Models of several families logged and registered on a real tracking
server with ``mlflow.sklearn.log_model``, as a team's notebook would; the
fitted estimators are kept so that a test can compare the app's answers
with the notebook's own predictions."""
import warnings

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_iris
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

SEED = 0
PLANS = ["basic", "plus", "pro"]
REVIEWS = ["great product, works well", "terrible, broke after a day", "love it, great value",
           "awful support and bad quality", "works as described, great", "bad, would not buy"]
REVIEW_LABELS = ["good", "bad", "good", "bad", "good", "bad"]


def churn_frame(n, seed):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "plan": rng.choice(PLANS, n),
        "tenure": rng.integers(1, 72, n).astype("int64"),
        "monthly": rng.uniform(10, 120, n).round(2),
    })
    churned = (frame["tenure"] < 12) | ((frame["plan"] == "basic") & (frame["monthly"] > 80))
    return frame, np.where(churned, "yes", "no")


def churn_model(C):
    X, y = churn_frame(300, SEED)
    pipeline = Pipeline([
        ("columns", ColumnTransformer([
            ("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
            ("numbers", StandardScaler(), ["tenure", "monthly"]),
        ])),
        ("classify", LogisticRegression(C=C, max_iter=1000, random_state=SEED)),
    ])
    return pipeline.fit(X, y), X


def iris_matrix_model():
    X, y = load_iris(return_X_y=True)
    return LogisticRegression(max_iter=1000, random_state=SEED).fit(X, y), X


def review_model():
    pipeline = Pipeline([("tfidf", TfidfVectorizer()),
                         ("classify", LogisticRegression(random_state=SEED))])
    return pipeline.fit(REVIEWS, REVIEW_LABELS)


class Logged:
    """What the notebook logged: the estimator, its URIs, its run."""

    def __init__(self, estimator, run_id, model_uri, version=None):
        self.estimator = estimator
        self.run_id = run_id
        self.model_uri = model_uri
        self.version = version


# MLflow infers requirements by loading the model in a child (~20 s a model);
# the champion keeps that, the others state theirs as a notebook may.
PINS = ["scikit-learn==1.9.1", "numpy==2.4.6", "scipy==1.17.1", "cloudpickle==3.1.3"]


def log(estimator, *, serialization_format, example, registered=None, signature_input=None,
        pip_requirements=PINS):
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature
    signature = infer_signature(example if signature_input is None else signature_input,
                                estimator.predict(example))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLflow's advice to prefer skops, per pickle
        with mlflow.start_run() as run:
            info = mlflow.sklearn.log_model(
                estimator, name="model", serialization_format=serialization_format,
                signature=signature, input_example=example,
                registered_model_name=registered,
                pip_requirements=pip_requirements)
    version = getattr(info, "registered_model_version", None)
    return Logged(estimator, run.info.run_id, "runs:/%s/model" % run.info.run_id,
                  str(version) if version is not None else None)


def log_all(tracking_uri):
    """Log and register every family; returns ``{key: Logged}``."""
    import mlflow
    from mlflow.tracking import MlflowClient
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("sklearn-serverless-tests")
    logged = {}
    churn_v1, X = churn_model(C=0.05)
    churn_v2, _ = churn_model(C=10.0)
    logged["churn_v1"] = log(churn_v1, serialization_format="cloudpickle", example=X.head(3),
                             registered="churn")
    logged["churn_v2"] = log(churn_v2, serialization_format="pickle", example=X.head(3),
                             registered="churn", pip_requirements=None)
    MlflowClient(tracking_uri).set_registered_model_alias(
        "churn", "champion", logged["churn_v2"].version)
    iris, Xi = iris_matrix_model()
    logged["iris"] = log(iris, serialization_format="pickle", example=Xi[:3])
    logged["iris_skops"] = log(iris, serialization_format="skops", example=Xi[:3])
    logged["reviews"] = log(review_model(), serialization_format="cloudpickle",
                            example=REVIEWS[:2], registered="reviews")
    # A signature that contradicts the estimator: the columns renamed; a
    # string column logged as numbers; a requirement the Lambda lacks.
    logged["renamed"] = log(churn_v2, serialization_format="pickle", example=X.head(3),
                            signature_input=X.head(3).rename(columns={"tenure": "months"}))
    coded = X.head(3).assign(plan=[0.0, 1.0, 2.0])
    logged["plan_as_number"] = log(churn_v2, serialization_format="pickle", example=X.head(3),
                                   signature_input=coded)
    logged["needs_lightgbm"] = log(iris, serialization_format="pickle", example=Xi[:3],
                                   pip_requirements=PINS + ["lightgbm==4.7.0"])
    return logged
