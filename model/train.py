"""Rebuild the bundled demo model: a scikit-learn Pipeline on iris.

    python -m model.train [--out model/]

Reproducible: fixed seeds, the pinned versions of requirements.txt, no
compression; the artifact's bytes (and so its sha256) come out identical on
every run with the same versions.
"""
import argparse
import os
import sys
import tempfile

import joblib
import numpy as np
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from model.publish import DEFAULT_OUT, publish

NAME = "iris-classifier"
VERSION = "1.0.0"
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
SEED = 42


def train():
    """The fitted pipeline and its held-out metrics."""
    iris = load_iris()
    # Train on the species names so the API answers "setosa", not 0.
    y = np.asarray(iris.target_names)[iris.target]
    X_train, X_test, y_train, y_test = train_test_split(
        iris.data, y, test_size=0.25, random_state=SEED, stratify=y)
    pipeline = Pipeline([
        ("scale", StandardScaler()),
        ("classify", LogisticRegression(max_iter=1000, random_state=SEED)),
    ])
    pipeline.fit(X_train, y_train)
    metrics = {
        "accuracy_test": round(float(pipeline.score(X_test, y_test)), 4),
        "accuracy_train": round(float(pipeline.score(X_train, y_train)), 4),
        "n_train": int(len(X_train)),
        "n_test": int(len(X_test)),
        "dataset": "sklearn.datasets.load_iris, 25%% stratified hold-out, seed %d" % SEED,
    }
    return pipeline, metrics


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m model.train")
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument("--created-at", help="ISO timestamp for the card (default: now)")
    args = parser.parse_args(argv)
    pipeline, metrics = train()
    with tempfile.TemporaryDirectory() as tmp:
        artifact = os.path.join(tmp, "model.joblib")
        joblib.dump(pipeline, artifact)
        card = publish(artifact, name=NAME, version=VERSION, features=FEATURES,
                       out_dir=args.out, metrics=metrics, created_at=args.created_at)
    print("trained %s %s: test accuracy %.4f, sha256 %s"
          % (NAME, VERSION, metrics["accuracy_test"], card["sha256"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
