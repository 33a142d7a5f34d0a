"""The models of ``tools.bench``: each with the artifact the floor loads, the
rows it is asked about and its targets (the 200-tree forest and the DataFrame
pipeline are trained once into ``build/bench/models/``). Their packages:
``tools/bench/packages.py``."""
import json
import os
import random
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO) if REPO not in sys.path else None

from chalicelib.schema.card import sha256_of  # noqa: E402

BENCH_DIR = os.path.join(REPO, "build", "bench")
PYTHON = sys.executable
IRIS_ROW = [5.1, 3.5, 1.4, 0.2]


def say(msg=""):
    print(msg, flush=True)


def note(msg):
    print("bench: %s" % msg, file=sys.stderr, flush=True)


def train_forest(path):
    """A 200-tree RandomForestClassifier on iris (same 4 features, same labels)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    code = ("import sys, joblib\n"
            "from sklearn.datasets import load_iris\n"
            "from sklearn.ensemble import RandomForestClassifier\n"
            "iris = load_iris()\n"
            "y = iris.target_names[iris.target]\n"
            "m = RandomForestClassifier(n_estimators=200, random_state=0).fit(iris.data, y)\n"
            "joblib.dump(m, sys.argv[1])\n")
    subprocess.run([PYTHON, "-c", code, path], check=True, env=env, cwd=REPO)


# The DataFrame pipeline of the model-families tests (OneHotEncoder on
# color/city, StandardScaler on age/income, LogisticRegression), fitted on its
# pandas DataFrame; with the notebook's first row and 1,000 fresh rows as JSON
# records (what a client sends).
TRAIN_TABULAR = ("import json, sys, joblib\n"
                 "from tools.fixtures.fixtures_families import customers, tabular_pipeline\n"
                 "model, notebook = tabular_pipeline()\n"
                 "joblib.dump(model, sys.argv[1])\n"
                 "rows, _ = customers(1000, seed=1)\n"
                 "with open(sys.argv[2], 'w') as f:\n"
                 "    json.dump({'single': json.loads(notebook.head(1).to_json(orient='records'))[0],\n"
                 "               'batch': json.loads(rows.to_json(orient='records'))}, f)\n")


def batch_rows(n, seed=0):
    rng = random.Random(seed)
    lows, highs = (4.3, 2.0, 1.0, 0.1), (7.9, 4.4, 6.9, 2.5)
    return [[round(rng.uniform(lo, hi), 1) for lo, hi in zip(lows, highs)] for _ in range(n)]


class Model:
    """A model benchmarked: its artifact, the rows it is asked about (one row
    and a 1,000-row batch, as lists in feature order or as records), what its
    estimator takes (``matrix`` or ``dataframe``: then the floors build a
    pandas DataFrame) and its targets."""

    def __init__(self, key, title, artifact, publish=None, single=IRIS_ROW, batch=None,
                 input_kind="matrix", warm_target=1.2, batch_target=1.0):
        self.key = key                # short name: iris, rf200, tabular
        self.title = title
        self.artifact = artifact      # the joblib file (the floor loads it)
        self.publish = publish        # (name, version) to publish into a copy, or None
        self.sha256 = sha256_of(artifact)
        self.single = single          # one instance: a list in feature order, or a record
        self.batch = batch if batch is not None else batch_rows(1000)
        self.input_kind = input_kind
        self.warm_target = warm_target
        self.batch_target = batch_target


def models(wanted):
    out = []
    if "iris" in wanted:
        out.append(Model("iris", "iris pipeline (StandardScaler+LogisticRegression)",
                         os.path.join(REPO, "model", "model.joblib")))
    if "rf200" in wanted:
        path = os.path.join(BENCH_DIR, "models", "rf200.joblib")
        if not os.path.isfile(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            note("training the 200-tree random forest")
            train_forest(path)
        out.append(Model("rf200", "random forest, 200 trees (iris features)", path,
                         publish=("iris-forest-200", "1.0.0")))
    if "tabular" in wanted:
        path = os.path.join(BENCH_DIR, "models", "tabular.joblib")
        rows_path = os.path.join(BENCH_DIR, "models", "tabular-rows.json")
        if not (os.path.isfile(path) and os.path.isfile(rows_path)):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            note("fitting the DataFrame pipeline "
                 "(tools.fixtures.fixtures_families.tabular_pipeline)")
            env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
            subprocess.run([PYTHON, "-c", TRAIN_TABULAR, path, rows_path], check=True, env=env,
                           cwd=REPO)
        with open(rows_path) as f:
            rows = json.load(f)
        # The targets for a DataFrame model: its typed path checks
        # and coerces every value, where the floor's DataFrame is given.
        out.append(Model("tabular", "DataFrame pipeline (OneHotEncoder+StandardScaler+"
                         "LogisticRegression, pandas)", path, publish=("customer-churn", "1.0.0"),
                         single=rows["single"], batch=rows["batch"], input_kind="dataframe",
                         warm_target=1.3, batch_target=1.1))
    return out
