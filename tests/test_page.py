"""GET /, the try-it page, without a browser: what the HTML and its headers
promise (size, CSP, nothing external, the card's facts, the form built from
the card's typed features), and that it costs the prediction path nothing.
The page's behaviour in a real browser is tests/test_page_browser.py."""
import base64
import hashlib
import json
import re
import subprocess
import sys

import pytest

from chalicelib.page import page
from tests.conftest import BUNDLED_MODEL, FEATURES, PROJECT_DIR

MAX_BYTES = 50 * 1024
# The page is what a browser gets: other clients of GET / get KServe V1's liveness.
HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
# A card of the typed schema (COMMON.md): every kind of feature, ranges, an
# example row; hostile names prove the escaping.
TYPED_CARD = {
    "name": "churn <b>model</b>", "version": "2.1.0", "task": "classification",
    "estimator": "Pipeline(ColumnTransformer, HistGradientBoostingClassifier)",
    "input": "dataframe",
    "features": [
        {"name": "age", "type": "number", "range": [18, 90]},
        {"name": "n_rooms", "type": "integer", "range": [1, 8]},
        {"name": "visits", "type": "integer"},
        {"name": "is_member", "type": "boolean"},
        {"name": "color", "type": "string", "categories": ["blue", "green", "red"],
         "unknown_categories": "error"},
        {"name": "city", "type": "string"},
        {"name": "<img src=x onerror=alert(1)>", "type": "number"},
        {"name": "plan", "type": "string", "categories": ['"</select><script>', "basic"]},
    ],
    "classes": ["no", "yes"],
    "example": {"instances": [{"age": 42, "n_rooms": 3, "visits": 7, "is_member": True,
                               "color": "red", "city": "Lyon",
                               "<img src=x onerror=alert(1)>": 0.5, "plan": "basic"}]},
    "metrics": {"roc_auc": 0.91, "note": "</script><script>alert(1)</script>"},
    "created_at": "2026-11-27T00:00:00+00:00",
}
TEXT_CARD = {"name": "sentiment", "version": "1.0.0", "task": "classification",
             "input": "texts", "features": [{"name": "review", "type": "text"}],
             "classes": ["neg", "pos"],
             "example": {"instances": ["a fine <film> & more"]}}


def csp_of(headers):
    return dict((part.strip().split(" ", 1) + [""])[:2]
                for part in headers["Content-Security-Policy"].split(";"))


def sha256_source(text):
    return "'sha256-%s'" % base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


def inline(tag, text):
    """Contents of every <tag> element without a type attribute."""
    return re.findall(r"<%s>(.*?)</%s>" % (tag, tag), text, re.S)


def check_self_contained(text, headers):
    """The CSP is strict, the one inline script and style are allowed by
    hash, and nothing in the page points anywhere else."""
    assert len(text.encode("utf-8")) <= MAX_BYTES
    csp = csp_of(headers)
    assert csp["default-src"] == "'none'"
    assert csp["connect-src"] == "'self'"
    assert csp["base-uri"] == csp["form-action"] == csp["frame-ancestors"] == "'none'"
    assert "unsafe" not in headers["Content-Security-Policy"]
    scripts, styles = inline("script", text), inline("style", text)
    assert len(scripts) == 1 and len(styles) == 1
    assert csp["script-src"] == sha256_source(scripts[0])
    assert csp["style-src"] == sha256_source(styles[0])
    # every other script element is a JSON data block (never executed)
    assert re.findall(r"<script[^>]*>", text) == ['<script type="application/json" id="config">',
                                                  "<script>"]
    assert not re.search(r"https?:|ftp:|//[a-z0-9]", text, re.I), "an absolute URL"
    assert "@import" not in text and "url(" not in text and "<link rel=\"stylesheet" not in text
    assert re.findall(r"\b(?:src|href)=\"([^\"]*)\"", text) == \
        ["data:,", "openapi.json", "model"]  # the favicon placeholder and two relative links
    assert "{{" not in text
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["X-Content-Type-Options"] == "nosniff"


def config_of(text):
    raw = re.search(r'<script type="application/json" id="config">(.*?)</script>', text, re.S)
    return json.loads(raw.group(1))


def test_the_page_is_one_small_self_contained_document(api):
    response = api.get("/", HTML)
    assert response.status_code == 200
    text = response.body.decode("utf-8")
    check_self_contained(text, response.headers)
    # what the card says, and per feature a slider over its training range
    # and a number input, prefilled from the card's example row
    card = json.load(open(BUNDLED_MODEL + "/model.json"))
    for fact in (card["name"], card["version"], card["estimator"], card["created_at"],
                 "accuracy_test", str(card["metrics"]["accuracy_test"]), "versicolor"):
        assert fact in text, fact
    example = card["example"]["instances"][0]
    for i, feature in enumerate(card["features"]):
        low, high = feature["range"]
        value = repr(example[feature["name"]])
        assert ('<input type="range" id="r{i}" data-for="f{i}" min="{low!r}" max="{high!r}" '
                'step="0.01" value="{value}" aria-label="{name} slider"><input type="number" '
                'id="f{i}" data-i="{i}" data-kind="number" step="any" value="{value}">'.format(
                    i=i, low=low, high=high, value=value, name=feature["name"])) in text
    assert text.count('type="range"') == len(FEATURES)
    assert config_of(text) == {
        "features": [{"name": n, "kind": "number"} for n in FEATURES],
        "text": False, "classes": card["classes"], "auth": "none"}
    assert 'id="apikey"' not in text  # dev is open: no key to ask for


def test_a_card_without_ranges_or_example_starts_at_zero_without_sliders(serve, model_copy):
    """The card as publish wrote it before typed schemas: number features only."""
    card_path = model_copy / "model.json"
    card = json.loads(card_path.read_text())
    card["features"] = [{"name": f["name"], "type": "number"} for f in card["features"]]
    card.pop("example", None)
    card_path.write_text(json.dumps(card))
    response = serve(MODEL_DIR=str(model_copy)).get("/", HTML)
    text = response.body.decode()
    check_self_contained(text, response.headers)
    inputs = re.findall(r'<input type="number" id="f(\d)" data-i="\d" data-kind="number" '
                        r'step="any" value="0">', text)
    assert inputs == ["0", "1", "2", "3"]
    assert 'type="range"' not in text


def test_the_page_is_built_once_per_process_and_never_loads_the_model(serve):
    # chalice local's mode: the model loads on the first prediction, not for the page
    api = serve(AWS_CHALICE_CLI_MODE="true")
    page._cache.clear()
    first = api.get("/", HTML)
    assert api.service.model._loaded is False
    built = page.page_of(api.service)
    assert page.page_of(api.service) is built  # cached: the same object
    assert api.get("/", HTML).body == first.body == built[1].encode()


def test_an_api_key_stage_asks_for_the_key_and_an_iam_stage_says_it_cannot_sign(
        serve):
    # The stage's API_AUTH is read once, into the service's frozen config.
    status, text, headers = page.page_of(serve(API_AUTH="api_key").service)
    check_self_contained(text, headers)
    assert '<input type="password" id="apikey" autocomplete="off"' in text
    assert config_of(text)["auth"] == "api_key"
    status, text, headers = page.page_of(serve(API_AUTH="iam").service)
    assert 'id="apikey"' not in text and "IAM (SigV4) signed requests" in text
    assert config_of(text)["auth"] == "iam"


def test_an_unreadable_card_gives_a_503_page_saying_why(serve, tmp_path):
    api = serve(MODEL_DIR=str(tmp_path))
    response = api.get("/", HTML)
    assert response.status_code == 503
    text = response.body.decode()
    check_self_contained(text, response.headers)
    assert "model card unavailable: no model card (model.json) in the model directory" in text


def test_the_prediction_path_never_imports_the_page():
    """A Lambda-like process (model loaded at import) answers POST /model
    without importing chalicelib.page.page; the first GET / imports and builds it."""
    script = """
import json, sys, time
import app
from chalice.test import Client
with Client(app.app) as client:
    r = client.http.post("/model", headers={"Content-Type": "application/json"},
                         body=json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]]}))
    assert r.status_code == 200, r.body
    before = "chalicelib.page.page" in sys.modules
    started = time.perf_counter()
    page = client.http.get("/", headers={"Accept": "text/html"})
    seconds = time.perf_counter() - started
    print(json.dumps({"before": before, "after": "chalicelib.page.page" in sys.modules,
                      "status": page.status_code, "seconds": seconds}))
"""
    run = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_DIR, capture_output=True,
                         text=True, timeout=120, env={"PATH": "/usr/bin:/bin",
                                                      "LOG_REQUESTS": "false",
                                                      "AWS_DEFAULT_REGION": "us-east-1"})
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["before"] is False and result["after"] is True and result["status"] == 200
    print("first GET / (import + build): %.1f ms" % (1000 * result["seconds"]))


# --------------------------------------------------------------------------
# The form from typed cards written by hand: every kind of feature, hostile
# names (tests/test_page_browser.py also runs pages of typed models that
# publisher.publish wrote and the app serves).

def test_the_form_follows_the_typed_features():
    fields = page.form_fields(TYPED_CARD)
    assert [(f["name"], f["kind"], f["value"]) for f in fields] == [
        ("age", "number", "42"), ("n_rooms", "integer", "3"), ("visits", "integer", "7"),
        ("is_member", "boolean", True), ("color", "category", "red"), ("city", "string", "Lyon"),
        ("<img src=x onerror=alert(1)>", "number", "0.5"),
        ("plan", "category", "basic")]
    form = page.render_form(fields)
    # a slider over the training range beside the number input
    assert ('<input type="range" id="r0" data-for="f0" min="18" max="90" step="0.1" '
            'value="42" aria-label="age slider"><input type="number" id="f0" data-i="0" '
            'data-kind="number" step="any" value="42">') in form
    assert ('<input type="range" id="r1" data-for="f1" min="1" max="8" step="1" value="3"'
            in form)
    assert '<input type="number" id="f2" data-i="2" data-kind="integer" step="1" value="7">' \
        in form
    assert 'id="r2"' not in form  # no range, no slider
    assert '<input type="checkbox" id="f3" data-i="3" data-kind="boolean" checked>' in form
    assert ('<select id="f4" data-i="4" data-kind="category"><option>blue</option>'
            '<option>green</option><option selected>red</option></select>') in form
    assert '<input type="text" id="f5" data-i="5" data-kind="string" value="Lyon">' in form
    # card strings are text, never markup
    assert "<img src=x" not in form and "&lt;img src=x onerror=alert(1)&gt;" in form
    assert "<option>&quot;&lt;/select&gt;&lt;script&gt;</option>" in form


def test_without_an_example_the_form_starts_mid_range_first_category_false_zero():
    card = dict(TYPED_CARD, example=None)
    values = {f["name"]: f["value"] for f in page.form_fields(card)}
    assert values == {"age": "54.0", "n_rooms": "4", "visits": "0", "is_member": False,
                      "color": "blue", "city": "", "<img src=x onerror=alert(1)>": "0",
                      "plan": '"</select><script>'}
    # a list example row fills by position; a broken range is ignored; a
    # type this page does not know is typed as text (the API says if it is wrong)
    card = {"features": [{"name": "a", "type": "number", "range": [5, 1]},
                         {"name": "b", "type": "number", "range": [0, 1]},
                         {"name": "c", "type": "datetime"}, {"name": "d"}],
            "example": {"instances": [[3.25, 0.75, "2026-11-27", 2]]}}
    fields = page.form_fields(card)
    assert [(f["kind"], f["value"], f.get("range")) for f in fields] == [
        ("number", "3.25", None), ("number", "0.75", (0, 1)), ("string", "2026-11-27", None),
        ("number", "2", None)]
    assert 'step="0.01"' in page.render_form(fields)


def test_a_typed_card_page_is_self_contained_and_escaped():
    text, csp = page.render_page(TYPED_CARD, "none")
    check_self_contained(text, {"Content-Security-Policy": csp, "Content-Type": page.HTML_TYPE,
                                "X-Content-Type-Options": "nosniff"})
    assert "<b>model</b>" not in text and "churn &lt;b&gt;model&lt;/b&gt;" in text
    assert "</script><script>alert(1)" not in text
    config = config_of(text)
    assert config["classes"] == ["no", "yes"] and config["text"] is False
    assert [f["kind"] for f in config["features"]] == [
        "number", "integer", "integer", "boolean", "category", "string", "number", "category"]


def test_a_text_model_gets_one_text_area():
    fields = page.form_fields(TEXT_CARD)
    assert fields == [{"name": "review", "kind": "text", "value": "a fine <film> & more"}]
    text, csp = page.render_page(TEXT_CARD, "none")
    assert ('<textarea id="f0" data-i="0" data-kind="text" rows="4">a fine &lt;film&gt; '
            '&amp; more</textarea>') in text
    assert config_of(text)["text"] is True
    assert "one text per line" in text


@pytest.mark.parametrize("n_features", [4, 60])
def test_the_page_stays_under_50_kb(n_features):
    card = {"name": "wide", "version": "1", "task": "regression",
            "features": [{"name": "feature_%03d" % i, "type": "number", "range": [0, 1000]}
                         for i in range(n_features)]}
    text, _ = page.render_page(card, "api_key")
    size = len(text.encode())
    assert size <= MAX_BYTES, size
    print("%d features: %d bytes" % (n_features, size))
