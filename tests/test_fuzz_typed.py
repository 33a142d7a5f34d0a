"""Fuzzing typed inputs: the DataFrame pipeline with string categories and
the text model, published with ``publisher.publish`` and invoked through the
real handler with API Gateway proxy events. Values of every JSON type in
every column (strings where numbers belong, numbers in string columns,
unknown categories, texts with odd Unicode, nulls, nesting), in JSON and CSV:
never a 5xx, always the error shape; rows of valid values answer exactly
what the estimator predicts on the DataFrame (or texts) the notebook builds.

``FUZZ_EXAMPLES`` scales it (``make harden`` runs the full count); figures
go to ``build/harden/fuzz_typed.json``.
"""
import csv
import io
import json
import os

import joblib
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import app as app_module
from chalicelib.protocols import service
from chalicelib.runtimes.choice import load_model_dir
from chalicelib.schema.features import Columns
from publisher.publish import publish
from tools.fixtures import fixtures_families as families
from tests.proxy_event import invoke, proxy_event

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIGURES = os.path.join(PROJECT_DIR, "build", "harden", "fuzz_typed.json")
TOTAL = int(os.environ.get("FUZZ_EXAMPLES", "1200")) // 4
STATS = {"requests": 0, "server_errors": 0, "valid_checked": 0}
TABULAR, _ = families.tabular_pipeline()
TEXT, _ = families.text_pipeline()
COLUMNS = ["color", "city", "age", "income"]


def _settings():
    return settings(max_examples=max(20, TOTAL), derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    base = tmp_path_factory.mktemp("typed-fuzz")
    dirs = {}
    # the DataFrame pipeline twice: compiled to ONNX (the default) and as a
    # pickle served by scikit-learn
    for name, model, onnx in (("tabular", TABULAR, True), ("tabular-pickle", TABULAR, False),
                              ("text", TEXT, True)):
        joblib.dump(model, base / (name + ".joblib"))
        card = publish(str(base / (name + ".joblib")), name=name, version="1",
                       out_dir=str(base / name), onnx=onnx)
        assert card["runtime"] == ("onnxruntime" if name == "tabular" else "scikit-learn")
        dirs[name] = str(base / name)
    yield dirs
    os.makedirs(os.path.dirname(FIGURES), exist_ok=True)
    with open(FIGURES, "w") as f:
        json.dump(STATS, f, indent=1)


@pytest.fixture
def use_model(model_dirs):
    saved = app_module.SERVICE

    def _use(name):
        app_module.SERVICE = service.from_environment(
            {"MODEL_DIR": model_dirs[name], "LOG_REQUESTS": "false"})
    yield _use
    app_module.SERVICE = saved


def send(body, content_type="application/json"):
    status, headers, text = invoke(app_module.app, proxy_event(body, content_type=content_type))
    STATS["requests"] += 1
    if status >= 500:
        STATS["server_errors"] += 1
    assert status < 500, text[:500]
    answer = json.loads(text)
    if status >= 400:
        assert status in (400, 413, 422), (status, text[:300])
        assert set(answer) == {"Code", "Message"} and answer["Message"], text[:300]
        assert "Traceback" not in text and "site-packages" not in text
    return status, answer


ODD_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)
ANY_VALUE = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=False),
    ODD_TEXT, st.sampled_from(families.COLORS + families.CITIES + ["", " red", "RED", "1e3"]),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(),
                                                         max_size=1))
VALID_ROW = st.fixed_dictionaries({
    "color": st.sampled_from(families.COLORS), "city": st.sampled_from(families.CITIES),
    "age": st.floats(0, 120, allow_nan=False), "income": st.floats(-1e6, 1e6, allow_nan=False)})


def as_csv(rows):
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([row[c] for c in COLUMNS])
    return out.getvalue()


def expected_labels(name, model_dirs, frame):
    """The served runtime's own answer, called bare: the notebook's
    ``predict`` on the DataFrame for the pickle; the graph fed the frame's
    columns for the compiled model (same process, same machine)."""
    if name == "tabular-pickle":
        return TABULAR.predict(frame).tolist()
    graph = load_model_dir(model_dirs[name]).estimator
    columns = Columns([frame[c].to_numpy() for c in COLUMNS], len(frame))
    return graph.predict(columns).tolist()


@pytest.mark.parametrize("name", ["tabular", "tabular-pickle"])
@_settings()
@given(rows=st.lists(VALID_ROW, min_size=1, max_size=8), as_text=st.booleans())
def test_valid_typed_rows_answer_what_the_notebook_predicts(use_model, model_dirs, name, rows,
                                                            as_text):
    use_model(name)
    status, answer = send(as_csv(rows), "text/csv") if as_text else send(json.dumps(
        {"dataframe_records": rows}))
    assert status == 200, answer
    frame = pd.DataFrame(rows, columns=COLUMNS)
    if as_text:  # what CSV carries: the repr of each float, read back exactly
        frame = pd.read_csv(io.StringIO(as_csv(rows)))
    assert answer["predictions"] == expected_labels(name, model_dirs, frame)
    STATS["valid_checked"] += 1


@pytest.mark.parametrize("name", ["tabular", "tabular-pickle"])
@_settings()
@given(rows=st.lists(st.fixed_dictionaries({c: ANY_VALUE for c in COLUMNS}), min_size=1,
                     max_size=4), form=st.sampled_from(["records", "lists", "csv"]))
def test_any_typed_values_never_fail_the_server(use_model, name, rows, form):
    use_model(name)
    if form == "records":
        send(json.dumps({"dataframe_records": rows}))
    elif form == "lists":
        send(json.dumps({"instances": [[r[c] for c in COLUMNS] for r in rows]}))
    else:
        send(as_csv(rows), "text/csv")


@_settings()
@given(st.lists(st.one_of(ODD_TEXT, ANY_VALUE), min_size=1, max_size=6))
def test_texts_with_odd_unicode(use_model, texts):
    use_model("text")
    status, answer = send(json.dumps({"instances": texts}))
    if all(type(t) is str for t in texts):
        assert status == 200, answer
        assert answer["predictions"] == TEXT.predict(texts).tolist()
        STATS["valid_checked"] += 1
