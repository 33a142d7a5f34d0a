"""Rebuild the bundled demo model: a scikit-learn Pipeline on iris.

    python -m publisher.train [--out model/iris] [--replace]

It writes ``model/iris/`` only: whatever other models ``model/`` holds stay
as they are.

What "reproducible" means here (docs/model-card.md):

* **Bit for bit, given the same BLAS kernel.** Training runs with OpenBLAS
  pinned to its ``Haswell`` kernel (AVX2 + FMA, which every x86-64 machine of
  this project has) and to one thread, and with numpy's AVX-512 loops off:
  the process re-executes itself with that environment before numpy loads,
  because OpenBLAS picks its kernel once, at load. With the pin the bytes no
  longer depend on which kernel the CPU would have picked (a test rebuilds
  under several ``OPENBLAS_CORETYPE`` values in one run and compares bytes).
* **Across machines, within a stated tolerance.** A machine with another
  libm or without AVX2 may still produce other last bits, so what is
  promised everywhere is :func:`compare`: identical predictions on all 150
  iris rows, probabilities and fitted parameters within ``RTOL``/``ATOL``,
  and the card identical but for ``sha256`` and ``created_at``.

A rebuild never silently replaces a committed artifact: when the bytes
differ, the committed one is kept (and the comparison printed) unless
``--replace`` is given; a rebuild outside the tolerance exits 1.
"""
import os
import sys

# Before numpy (and with it OpenBLAS) is imported anywhere in this process.
PINNED_ENV = {
    "OPENBLAS_CORETYPE": "Haswell",
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "NPY_DISABLE_CPU_FEATURES": "AVX512F AVX512CD AVX512_SKX AVX512_CLX AVX512_CNL "
                                "AVX512_ICL AVX512_SPR",
}


def _pinned():
    return all(os.environ.get(k) == v for k, v in PINNED_ENV.items())


if __name__ == "__main__" and not _pinned() and "numpy" not in sys.modules:
    os.execve(sys.executable, [sys.executable, "-m", "publisher.train", *sys.argv[1:]],
              {**os.environ, **PINNED_ENV})

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402

import joblib  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_iris  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from chalicelib.schema.card import ARTIFACT_FILE, CARD_FILE, sha256_of  # noqa: E402
from publisher.publish import BUNDLED_MODEL_DIR, publish  # noqa: E402

NAME = "iris-classifier"
VERSION = "1.0.0"
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
SEED = 42
# Kernels differ by a few ulps (~1e-15 measured between OpenBLAS's Haswell
# and SkylakeX kernels); a real change of model moves these by far more.
RTOL = 1e-9
ATOL = 1e-12
CARD_FIELDS_THAT_MAY_DIFFER = ("sha256", "created_at")


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
    return pipeline, metrics, X_train


def compare(committed_dir, rebuilt_dir):
    """What differs between two builds of the demo model, as a list of
    problems (empty: equivalent within the stated tolerance) and the largest
    differences seen."""
    problems = []
    cards = [json.load(open(os.path.join(d, CARD_FILE))) for d in (committed_dir, rebuilt_dir)]
    keys = set(cards[0]) | set(cards[1])
    for key in sorted(keys - set(CARD_FIELDS_THAT_MAY_DIFFER)):
        if key == "onnx":
            # the graph is made from the pickle: its digest follows the
            # pickle's bytes, its measured agreement the kernel's last bits
            cards[0][key], cards[1][key] = (_graph_fields(c.get(key)) for c in cards)
        if cards[0].get(key) != cards[1].get(key):
            problems.append("card field %r differs: %r != %r" % (key, cards[0].get(key), cards[1].get(key)))
    models = [joblib.load(os.path.join(d, ARTIFACT_FILE)) for d in (committed_dir, rebuilt_dir)]
    X = load_iris().data
    labels = [m.predict(X) for m in models]
    if not np.array_equal(labels[0], labels[1]):
        problems.append("predictions differ on %d of %d iris rows"
                        % (int((labels[0] != labels[1]).sum()), len(X)))
    pairs = {"probabilities": [m.predict_proba(X) for m in models],
             "coef_": [m[-1].coef_ for m in models],
             "intercept_": [m[-1].intercept_ for m in models],
             "scaler mean_": [m[0].mean_ for m in models],
             "scaler scale_": [m[0].scale_ for m in models]}
    largest = {}
    for what, (a, b) in pairs.items():
        largest[what] = float(np.max(np.abs(a - b))) if a.shape == b.shape else float("inf")
        if a.shape != b.shape or not np.allclose(a, b, rtol=RTOL, atol=ATOL):
            problems.append("%s differ beyond rtol=%g, atol=%g (largest difference %g)"
                            % (what, RTOL, ATOL, largest[what]))
    return problems, largest


def _foreign_model(out_dir):
    """What ``out_dir`` holds when it is not the bundled model (another
    model's card, or files without a card); None when it is the bundled one
    or empty."""
    if not os.path.isdir(out_dir) or not os.listdir(out_dir):
        return None
    try:
        with open(os.path.join(out_dir, CARD_FILE)) as f:
            card = json.load(f)
    except (OSError, ValueError):
        return "files without a readable model card"
    if not isinstance(card, dict) or card.get("name") != NAME:
        return "the model %r" % (card.get("name") if isinstance(card, dict) else card,)
    return None


def _graph_fields(onnx):
    """What two builds' ``onnx`` sections must share: all but the digest and
    the measured differences (each within the stated rtol, or no graph)."""
    if not isinstance(onnx, dict):
        return onnx
    agreement = {k: v for k, v in onnx.get("agreement", {}).items()
                 if not k.endswith(("difference", "_max_error"))}
    return dict({k: v for k, v in onnx.items() if k not in ("sha256", "agreement")},
                agreement=agreement)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m publisher.train")
    parser.add_argument("--out", default=BUNDLED_MODEL_DIR)
    parser.add_argument("--created-at", help="ISO timestamp for the card (default: now)")
    parser.add_argument("--replace", action="store_true",
                        help="write the rebuilt artifact even if a different one is in --out")
    args = parser.parse_args(argv)
    if not _pinned():
        print("warning: BLAS kernel not pinned (numpy was imported before publisher.train); "
              "the bytes may differ from a pinned build", file=sys.stderr)
    pipeline, metrics, X_train = train()
    import pandas as pd  # the training rows give the card its ranges and example
    sample = pd.DataFrame(X_train, columns=FEATURES)
    with tempfile.TemporaryDirectory() as tmp:
        artifact = os.path.join(tmp, ARTIFACT_FILE)
        joblib.dump(pipeline, artifact)
        rebuilt_dir = os.path.join(tmp, "rebuilt")
        card = publish(artifact, name=NAME, version=VERSION, features=FEATURES, sample=sample,
                       out_dir=rebuilt_dir, metrics=metrics, created_at=args.created_at)
        print("trained %s %s: test accuracy %.4f, sha256 %s"
              % (NAME, VERSION, metrics["accuracy_test"], card["sha256"]))
        existing = os.path.join(args.out, ARTIFACT_FILE)
        foreign = _foreign_model(args.out)
        if foreign:
            print("%s holds %s, not the bundled %s%s" % (
                args.out, foreign, NAME, ": replaced (--replace)" if args.replace else
                "; publish your own models under their own --name (model/NAME/), or "
                "--replace to put the bundled one back"), file=sys.stderr)
            if not args.replace:
                return 1
        elif os.path.isfile(existing) and os.path.isfile(os.path.join(args.out, CARD_FILE)):
            if sha256_of(existing) == card["sha256"]:
                print("%s is byte-identical to the rebuild: left as it is" % existing)
                committed = json.load(open(os.path.join(args.out, CARD_FILE)))
                if {**committed, "created_at": None} != {**card, "created_at": None}:
                    publish(artifact, name=NAME, version=VERSION, features=FEATURES,
                            sample=sample, out_dir=args.out, metrics=metrics,
                            created_at=committed["created_at"], force=True)
                    print("the card was out of date: rewritten (created_at kept)")
                return 0
            problems, largest = compare(args.out, rebuilt_dir)
            print("the rebuild differs from %s in its bytes; largest differences: %s"
                  % (existing, ", ".join("%s %.3g" % kv for kv in largest.items())))
            if problems:
                print("NOT equivalent:\n  " + "\n  ".join(problems), file=sys.stderr)
                if not args.replace:
                    return 1
            elif not args.replace:
                print("equivalent within rtol=%g, atol=%g: kept the existing artifact "
                      "(--replace writes the rebuilt one)" % (RTOL, ATOL))
                return 0
        publish(artifact, name=NAME, version=VERSION, features=FEATURES, sample=sample,
                out_dir=args.out, metrics=metrics, created_at=card["created_at"], force=True)
        print("wrote %s" % args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
