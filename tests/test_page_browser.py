"""The try-it page in a real browser: Debian's Chromium (``apt-get install
chromium``), headless, driven by Playwright against a real ``chalice local``.

What is proven here: the page loads and runs under its own CSP (no
violation, no script error, no request leaves the page's origin); Predict
shows the label and the class probabilities ``POST /model`` answers for the
same row (same server, same run), for the bundled iris model, a DataFrame
pipeline with string categories and a text model that ``publisher.publish``
wrote; the what-if re-predicts as a number is typed (debounced), a slider
moves or a category changes; a 422 shows the API's message next to the
field it names;
a CSV batch (pasted, dropped or chosen) gives a table and a download equal to
the API's CSV answer; on an API-key stage behind a stand-in for API
Gateway's key check (AWS itself, the one thing mocked) under a stage path,
the key is asked for, sent as x-api-key, kept nowhere, and a 403 is said
plainly; a hand-written card with every feature type and hostile names
builds the requests of the shared contract; a changed script under the same
CSP does not run (the control). A screenshot goes to build/try-it.png.

Nothing here downloads a browser: a machine without /usr/bin/chromium skips
this test, saying so, and fails it under ``CI=1`` (``.ci/run`` installs it;
tests/conftest.py decides).
"""
import http.client
import http.server
import json
import os
import threading
import urllib.error
import urllib.parse
import urllib.request

import pytest
from playwright.sync_api import sync_playwright

from chalicelib.page import page as page_module
from tests.conftest import BUNDLED_MODEL, FEATURES, IRIS_ROWS, PROJECT_DIR, chalice_local
from tests.test_page import TEXT_CARD, TYPED_CARD

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOT = os.path.join(PROJECT_DIR, "build", "try-it.png")
API_KEY = "test-key-0123456789"
with open(os.path.join(BUNDLED_MODEL, "model.json")) as _f:
    EXAMPLE = json.load(_f)["example"]["instances"][0]


@pytest.fixture(scope="module")
def browser():
    assert os.access(CHROMIUM, os.X_OK), (
        "%s is missing: apt-get install -y chromium (this test never downloads a browser)"
        % CHROMIUM)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


class Watched:
    """A page with everything the browser reported about it."""

    def __init__(self, page, origin):
        self.page = page
        self.origin = origin
        self.console = []
        self.errors = []
        self.requests = []
        page.on("console", lambda m: self.console.append((m.type, m.text)))
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("request", lambda r: self.requests.append(r))

    def csp_violations(self):
        return [t for _, t in self.console if "Content Security Policy" in t]

    def check_clean(self):
        assert not self.errors, self.errors
        if self.page.url.endswith("/tampered"):
            return  # the control below: violations are what it wants
        assert not self.csp_violations(), self.console
        # the only console errors: the status of a refused request (422, 403, 503)
        others = [t for kind, t in self.console if kind == "error"
                  and "the server responded with a status of " not in t]
        assert not others, others
        for request in self.requests:
            assert request.url.startswith(self.origin + "/") or \
                request.url.startswith(("blob:", "data:")), request.url


@pytest.fixture
def open_page(browser):
    contexts = []
    watched = []

    def _open(url, origin=None):
        context = browser.new_context(viewport={"width": 1100, "height": 900},
                                      accept_downloads=True)
        contexts.append(context)
        page = context.new_page()
        w = Watched(page, origin or url.split("/", 3)[0] + "//" + url.split("/", 3)[2])
        watched.append(w)
        page.goto(url)
        return w

    yield _open
    for w in watched:
        w.check_clean()
    for context in contexts:
        context.close()


def api(url, body, content_type="application/json", query="", headers=None):
    """(status, JSON) of POST /model, the way any client calls it."""
    data = body if isinstance(body, str) else json.dumps(body)
    request = urllib.request.Request(url + "/model" + query, data=data.encode(), method="POST",
                                     headers=dict(headers or {}, **{"Content-Type": content_type}))
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def is_prediction(response):
    return response.request.method == "POST" and "/model" in response.url


def settled(page, status_id="status"):
    """Wait until no prediction is pending in ``#status_id``."""
    page.wait_for_function("id => !document.getElementById(id).textContent.includes('\u2026')",
                           arg=status_id)


def for_row(row):
    """A predicate for the response to the prediction of ``row``."""
    wanted = dict(zip(FEATURES, row))

    def matches(response):
        return is_prediction(response) and \
            json.loads(response.request.post_data)["instances"] == [wanted]
    return matches


def wait_for_text(page, element_id, text, prefix=False):
    page.wait_for_function("([id, text, prefix]) => { const t = document.getElementById(id)"
                           ".textContent; return prefix ? t.startsWith(text) : t === text; }",
                           arg=[element_id, text, prefix])


def predict(page):
    """Click Predict; the JSON body the page sent."""
    with page.expect_response(is_prediction) as info:
        page.click("#predict")
    settled(page)
    return json.loads(info.value.request.post_data)


def shown(page):
    return page.evaluate("""() => ({
        label: document.getElementById('answer').hidden ? null
               : document.getElementById('label').textContent,
        classes: [...document.querySelectorAll('#bars .bar')].map(b => b.dataset.class),
        probabilities: [...document.querySelectorAll('#bars .bar')].map(b => Number(b.dataset.p)),
        percents: [...document.querySelectorAll('#bars .pct')].map(p => p.textContent),
        top: [...document.querySelectorAll('#bars .bar.top')].map(b => b.dataset.class),
        status: document.getElementById('status').textContent})""")


def check_shown_equals_api(page, url, row):
    status, expected = api(url, {"instances": [dict(zip(FEATURES, row))], "probabilities": True})
    assert status == 200
    got = shown(page)
    assert got["label"] == expected["predictions"][0]
    assert got["classes"] == expected["classes"]
    assert got["probabilities"] == expected["probabilities"][0]  # same server, same run
    assert got["top"] == [expected["predictions"][0]]
    for text, p in zip(got["percents"], expected["probabilities"][0]):
        assert abs(float(text.rstrip("%")) - 100 * p) <= 0.051
    return expected


def fill_row(page, row):
    for i, value in enumerate(row):
        page.fill("#f%d" % i, repr(value))


def table_of(page):
    return page.evaluate("""() => [...document.querySelectorAll('#table tr')]
        .map(tr => [...tr.children].map(c => c.textContent))""")


# --------------------------------------------------------------------------

def test_predict_shows_the_label_and_probabilities_post_model_answers(open_page, local_url):
    w = open_page(local_url + "/")
    page = w.page
    assert page.title() == "iris-classifier: try it"
    # an open stage predicts the prefilled row (the card's example) at once
    page.wait_for_selector("#answer:not([hidden])")
    settled(page)
    check_shown_equals_api(page, local_url, [EXAMPLE[name] for name in FEATURES])
    page.uncheck("#live")  # Predict alone (the what-if has its own test)
    for row in IRIS_ROWS:
        fill_row(page, row)
        sent = predict(page)
        assert sent == {"instances": [dict(zip(FEATURES, row))], "probabilities": True}
        check_shown_equals_api(page, local_url, row)
    assert page.get_attribute("a[data-path=openapi\\.json]", "href") == "/openapi.json"


def test_what_if_re_predicts_as_a_number_is_typed(open_page, local_url):
    page = open_page(local_url + "/").page
    page.wait_for_selector("#answer:not([hidden])")
    settled(page)
    row = list(IRIS_ROWS[2])
    with page.expect_response(for_row(row)):
        fill_row(page, row)  # each fill is one input event: the what-if follows
    settled(page)
    check_shown_equals_api(page, local_url, row)
    sent = []
    page.on("request", lambda r: sent.append(r) if r.method == "POST" else None)
    page.click("#f2")
    page.keyboard.press("Control+A")
    row[2] = 1.45
    with page.expect_response(for_row(row)):
        page.keyboard.type("1.45", delay=40)  # four keystrokes, no click
    settled(page)
    check_shown_equals_api(page, local_url, row)
    # debounced: one request for the four keystrokes (not one each)
    assert 1 <= len(sent) < 4, [r.post_data for r in sent]
    assert json.loads(sent[-1].post_data)["instances"][0]["petal_length"] == 1.45
    # the slider over the training range moves the number and re-predicts
    page.focus("#r2")
    row[2] = 1.44
    with page.expect_response(for_row(row)):
        page.keyboard.press("ArrowLeft")
    settled(page)
    assert page.input_value("#f2") == "1.44"
    check_shown_equals_api(page, local_url, row)
    # switched off, moving a value sends nothing
    page.uncheck("#live")
    count = len(sent)
    page.fill("#f2", "4.4")
    page.wait_for_timeout(500)
    assert len(sent) == count


def test_a_422_message_shows_next_to_the_field_it_names(open_page, local_url):
    page = open_page(local_url + "/").page
    page.wait_for_selector("#answer:not([hidden])")
    settled(page)
    page.uncheck("#live")
    fill_row(page, IRIS_ROWS[0])
    page.fill("#f3", "")
    sent = predict(page)
    status, expected = api(local_url, sent)
    assert status == 422 and expected["Message"].startswith("instances[0].petal_width: ")
    assert page.text_content("#e3") == expected["Message"]
    assert "invalid" in page.get_attribute("#f3", "class")
    assert page.text_content("#status") == "422 UnprocessableEntityError: " + expected["Message"]
    assert page.is_hidden("#answer")
    for i in range(3):
        assert page.text_content("#e%d" % i) == ""
    page.fill("#f3", "0.2")
    predict(page)
    assert page.text_content("#e3") == "" and shown(page)["label"] == "setosa"


def test_a_csv_batch_pasted_dropped_or_chosen(open_page, local_url, tmp_path):
    page = open_page(local_url + "/").page
    page.wait_for_selector("#answer:not([hidden])")
    settled(page)
    # a header in another order, as a spreadsheet would export it
    order = [3, 0, 2, 1]
    csv_text = ",".join(FEATURES[j] for j in order) + "\n" + "".join(
        ",".join(repr(r[j]) for j in order) + "\n" for r in IRIS_ROWS)
    page.fill("#csv", csv_text)
    with page.expect_response(is_prediction) as info:
        page.click("#run")
    settled(page, "bstatus")
    assert info.value.request.headers["content-type"] == "text/csv"
    assert info.value.url.endswith("/model?probabilities=true")
    status, expected = api(local_url, csv_text, "text/csv", "?probabilities=true")
    assert status == 200
    assert page.text_content("#bstatus") == "3 rows predicted."
    table = table_of(page)
    assert table[0] == [FEATURES[j] for j in order] + ["prediction"] + \
        ["p(%s)" % c for c in expected["classes"]]
    for line, row, label, proba in zip(table[1:], IRIS_ROWS, expected["predictions"],
                                       expected["probabilities"]):
        assert [float(v) for v in line[:4]] == [row[j] for j in order]
        assert line[4] == label
        assert [float(p) for p in line[5:]] == proba
    assert len(table) == 4
    with page.expect_download() as download:
        page.click("#download")
    saved = tmp_path / "predictions.csv"
    download.value.save_as(saved)
    assert download.value.suggested_filename == "predictions.csv"
    assert [line.split(",") for line in saved.read_text().splitlines()] == table

    # a file dropped on the box runs at once (rows in feature order, no header)
    dropped = "6.9,3.1,5.4,2.1\n5.0,3.4,1.5,0.2\n"
    page.evaluate("""text => {
        const data = new DataTransfer();
        data.items.add(new File([text], 'rows.csv', {type: 'text/csv'}));
        document.getElementById('csv').dispatchEvent(
            new DragEvent('drop', {dataTransfer: data, bubbles: true, cancelable: true}));
    }""", dropped)
    wait_for_text(page, "bstatus", "2 rows predicted.")
    status, expected = api(local_url, dropped, "text/csv", "?probabilities=true")
    table = table_of(page)
    assert table[0][:5] == FEATURES + ["prediction"]
    assert [line[4] for line in table[1:]] == expected["predictions"] == ["virginica", "setosa"]
    assert page.input_value("#csv") == dropped

    # a chosen file, with a bad value: the API's message, said as it is
    bad = tmp_path / "bad.csv"
    bad.write_text("5.1,3.5,1.4,0.2\n5.1,abc,1.4,0.2\n")
    page.set_input_files("#file", str(bad))
    wait_for_text(page, "bstatus", "422", prefix=True)
    status, expected = api(local_url, bad.read_text(), "text/csv", "?probabilities=true")
    assert status == 422
    assert page.text_content("#bstatus") == "422 UnprocessableEntityError: " + expected["Message"]
    assert "CSV line 2, column 2 (sepal_width)" in expected["Message"]
    assert table_of(page) == [] and page.is_hidden("#download")


def test_screenshot(open_page, local_url):
    """The README's and docs/try-it-page.md's picture: a versicolor row predicted and a small batch."""
    page = open_page(local_url + "/").page
    page.wait_for_selector("#answer:not([hidden])")
    settled(page)
    page.uncheck("#live")
    fill_row(page, IRIS_ROWS[1])
    predict(page)
    check_shown_equals_api(page, local_url, IRIS_ROWS[1])
    page.check("#live")
    page.fill("#csv", ",".join(FEATURES) + "\n" + "".join(
        ",".join(map(repr, r)) + "\n" for r in IRIS_ROWS))
    page.click("#run")
    wait_for_text(page, "bstatus", "3 rows predicted.")
    os.makedirs(os.path.dirname(SCREENSHOT), exist_ok=True)
    page.screenshot(path=SCREENSHOT, full_page=True)
    with open(SCREENSHOT, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(SCREENSHOT) > 20_000


# --------------------------------------------------------------------------
# An API-key stage, as API Gateway serves it: under /<stage>, 403 without a
# valid key. chalice local does not check keys (API Gateway does), so a
# loopback stand-in for that check sits in front of it.

class GatewayStandIn(http.server.BaseHTTPRequestHandler):
    upstream = stage = key = None
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _reply(self, status, body, headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _forward(self):
        prefix = "/" + self.stage
        path, _, query = self.path.partition("?")
        if path != prefix and not path.startswith(prefix + "/"):
            return self._reply(403, b'{"message":"Missing Authentication Token"}',
                               [("Content-Type", "application/json")])
        rest = path[len(prefix):] or "/"
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if rest == "/model" and self.headers.get("x-api-key") != self.key:
            return self._reply(403, b'{"message":"Forbidden"}',
                               [("Content-Type", "application/json")])
        host = urllib.parse.urlsplit(self.upstream)
        connection = http.client.HTTPConnection(host.hostname, host.port, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "accept")}
        connection.request(self.command, rest + ("?" + query if query else ""), body, headers)
        response = connection.getresponse()
        data = response.read()
        connection.close()
        self._reply(response.status, data, [(k, v) for k, v in response.getheaders()
                                            if k.lower() not in ("content-length", "connection",
                                                                 "transfer-encoding", "date",
                                                                 "server")])

    do_GET = do_POST = _forward


@pytest.fixture(scope="module")
def prod_like(tmp_path_factory):
    """(URL of the stage, URL of chalice local behind it): the prod stage's
    variables (API_AUTH=api_key), under /prod, keys checked in front."""
    log = tmp_path_factory.mktemp("chalice-local-prod") / "output.log"
    with chalice_local(log, stage="prod", LOG_REQUESTS="false") as upstream:
        handler = type("StandIn", (GatewayStandIn,),
                       {"upstream": upstream, "stage": "prod", "key": API_KEY})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield "http://127.0.0.1:%d/prod" % server.server_address[1], upstream
        finally:
            server.shutdown()
            server.server_close()


def test_an_api_key_stage_asks_for_the_key_and_says_a_403_plainly(open_page, prod_like):
    stage_url, upstream = prod_like
    origin = stage_url.rsplit("/", 1)[0]
    w = open_page(stage_url, origin)  # no trailing slash, as `chalice url` users may type it
    page = w.page
    assert page.get_attribute("a[data-path=openapi\\.json]", "href") == "/prod/openapi.json"
    assert page.text_content("#endpoint") == "/prod/model"
    assert page.is_visible("#apikey")
    assert page.text_content("#status") == ""  # nothing sent before a key is given
    page.uncheck("#live")
    fill_row(page, IRIS_ROWS[2])
    predict(page)
    assert page.text_content("#status") == ("403 Forbidden: this stage needs a valid API key. "
                                            "Enter one in the API key field above.")
    assert page.is_hidden("#answer")
    page.fill("#apikey", "not-the-key")
    predict(page)
    assert page.text_content("#status") == ("403 Forbidden: this stage needs a valid API key. "
                                            "The key entered was refused.")
    page.fill("#apikey", API_KEY)
    with page.expect_request(lambda r: r.method == "POST") as request:
        predict(page)
    assert request.value.headers["x-api-key"] == API_KEY
    expected = check_shown_equals_api(page, upstream, IRIS_ROWS[2])
    assert expected["predictions"] == ["virginica"]
    # the batch goes through the same key
    page.click("#run")
    wait_for_text(page, "bstatus", "1 row predicted.")
    # the key lives in the input only: nothing stored, nothing in a cookie or the URL
    assert page.evaluate("() => localStorage.length + sessionStorage.length") == 0
    assert page.evaluate("() => document.cookie") == "" and API_KEY not in page.url
    page.reload()
    assert page.input_value("#apikey") == ""
    assert API_KEY not in page.content()


# --------------------------------------------------------------------------
# Typed models as a data scientist brings them: fitted on a DataFrame (string
# categories, numbers, an integer) or on texts, published by publisher.publish
# (which writes the typed card: categories, ranges from a sample, the
# example row) and served by a real chalice local.

def publish_served(tmp_path_factory, family):
    import joblib
    import numpy as np
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OrdinalEncoder

    from publisher.publish import publish
    from tools.fixtures import fixtures_families as families
    where = tmp_path_factory.mktemp(family)
    options = {}
    if family == "customers":
        X, y = families.customers()
        X["members"] = np.arange(len(X)) % 5
        model = Pipeline([("prepare", ColumnTransformer(
            [("c", OrdinalEncoder(), ["color", "city"])], remainder="passthrough")),
            ("classify", LogisticRegression(max_iter=2000))]).fit(X, y)
        X.head(40).to_csv(where / "sample.csv", index=False)
        options["sample"] = str(where / "sample.csv")
    else:
        model, X = families.text_pipeline()
    joblib.dump(model, where / "model.joblib")
    card = publish(str(where / "model.joblib"), name=family, version="1.0.0",
                   out_dir=str(where / "served"), **options)
    return card, str(where / "served"), X


@pytest.fixture(scope="module")
def customers_model(tmp_path_factory):
    card, model_dir, frame = publish_served(tmp_path_factory, "customers")
    log = tmp_path_factory.mktemp("chalice-local-customers") / "output.log"
    with chalice_local(log, MODEL_DIR=model_dir, LOG_REQUESTS="false") as url:
        yield url, card, frame


@pytest.fixture(scope="module")
def text_model(tmp_path_factory):
    card, model_dir, texts = publish_served(tmp_path_factory, "text")
    log = tmp_path_factory.mktemp("chalice-local-text") / "output.log"
    with chalice_local(log, MODEL_DIR=model_dir, LOG_REQUESTS="false") as url:
        yield url, card, texts


def check_shown_equals_body(page, url, body):
    """What the page shows equals what POST /model answers to ``body``."""
    status, expected = api(url, body)
    assert status == 200, expected
    got = shown(page)
    assert got["label"] == expected["predictions"][0]
    assert got["classes"] == expected["classes"]
    assert got["probabilities"] == expected["probabilities"][0]
    return expected


def test_a_served_dataframe_model_with_categories_ranges_and_an_integer(open_page,
                                                                        customers_model):
    url, card, frame = customers_model
    features = {f["name"]: f for f in card["features"]}
    assert features["color"]["categories"] == ["blue", "green", "red"]
    assert features["members"]["type"] == "integer" and "range" in features["age"]
    page = open_page(url + "/").page
    names = [f["name"] for f in card["features"]]
    at = {name: i for i, name in enumerate(names)}
    # the form the card asks for
    options = page.evaluate("""i => [...document.getElementById('f' + i).options]
                               .map(o => o.value)""", at["city"])
    assert options == features["city"]["categories"]
    assert page.get_attribute("#r%d" % at["age"], "min") == repr(features["age"]["range"][0])
    assert page.get_attribute("#f%d" % at["members"], "data-kind") == "integer"
    # on load: the card's example row, as the API answers it
    page.wait_for_selector("#answer:not([hidden])")
    settled(page)
    check_shown_equals_body(page, url, dict(card["example"], probabilities=True))
    # what-if: another category re-predicts at once
    example = card["example"]["instances"][0]
    other = next(c for c in features["color"]["categories"] if c != example["color"])
    with page.expect_response(is_prediction) as info:
        page.select_option("#f%d" % at["color"], other)
    settled(page)
    sent = json.loads(info.value.request.post_data)
    assert sent == {"instances": [dict(example, color=other)], "probabilities": True}
    check_shown_equals_body(page, url, sent)
    # a bad number: the API's message by the field
    page.uncheck("#live")
    page.fill("#f%d" % at["age"], "")
    sent = predict(page)
    status, refused = api(url, sent)
    assert status == 422 and refused["Message"].startswith("instances[0].age: ")
    assert page.text_content("#e%d" % at["age"]) == refused["Message"]
    # a batch: the DataFrame as pandas writes it
    csv_text = frame.head(5).to_csv(index=False)
    page.fill("#csv", csv_text)
    page.click("#run")
    wait_for_text(page, "bstatus", "5 rows predicted.")
    status, expected = api(url, csv_text, "text/csv", "?probabilities=true")
    table = table_of(page)
    assert table[0] == list(frame.columns) + ["prediction"] + \
        ["p(%s)" % c for c in expected["classes"]]
    assert [line[len(names)] for line in table[1:]] == expected["predictions"]
    assert [[float(p) for p in line[len(names) + 1:]] for line in table[1:]] == \
        expected["probabilities"]


def test_a_served_text_model(open_page, text_model):
    url, card, texts = text_model
    page = open_page(url + "/").page
    assert page.get_attribute("#f0", "data-kind") == "text"
    assert page.input_value("#f0") == card["example"]["instances"][0]
    page.wait_for_selector("#answer:not([hidden])")
    settled(page)
    check_shown_equals_body(page, url, dict(card["example"], probabilities=True))
    page.uncheck("#live")
    for text in texts:
        page.fill("#f0", text)
        sent = predict(page)
        assert sent == {"instances": [text], "probabilities": True}
        check_shown_equals_body(page, url, sent)
    page.fill("#csv", "\n".join(texts[:2]) + "\n")  # one text per line
    with page.expect_response(is_prediction) as info:
        page.click("#run")
    wait_for_text(page, "bstatus", "2 rows predicted.")
    sent = json.loads(info.value.request.post_data)
    assert sent == {"instances": texts[:2], "probabilities": True}
    status, expected = api(url, sent)
    assert [line[1] for line in table_of(page)[1:]] == expected["predictions"]


# --------------------------------------------------------------------------
# Cards written by hand: every kind of feature, hostile names. The page is
# served by a loopback server that records what the page sends (and answers
# 503: no model behind it); what is checked is the request the page builds.

class RecordingServer(http.server.BaseHTTPRequestHandler):
    text = csp = None
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        body = self.text.encode()
        if self.path == "/tampered":  # one character of the script changed, same CSP
            body = self.text.replace('"use strict";', "'use strict';", 1).encode()
        self.send_response(200)
        self.send_header("Content-Type", page_module.HTML_TYPE)
        self.send_header("Content-Security-Policy", self.csp)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.bodies.append((self.path, self.headers.get("Content-Type"), data.decode()))
        body = b'{"Code": "ServiceUnavailable", "Message": "recorded only"}'
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def serve_card():
    servers = []

    def _serve(card):
        text, csp = page_module.render_page(card, "none")
        handler = type("Recording", (RecordingServer,), {"text": text, "csp": csp})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.bodies = []
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return "http://127.0.0.1:%d" % server.server_address[1], server.bodies

    yield _serve
    for server in servers:
        server.shutdown()
        server.server_close()


def wait_for_bodies(page, bodies, n):
    for _ in range(100):
        if len(bodies) >= n:
            return [json.loads(b[2]) for b in bodies]
        page.wait_for_timeout(50)
    raise AssertionError("expected %d requests, got %r" % (n, bodies))


def test_a_typed_card_builds_typed_requests(open_page, serve_card):
    url, bodies = serve_card(TYPED_CARD)
    page = open_page(url + "/").page
    # on load: the card's example row, exactly, asking for probabilities
    first = wait_for_bodies(page, bodies, 1)[0]
    assert first == dict(TYPED_CARD["example"], probabilities=True)
    wait_for_text(page, "status", "503", prefix=True)
    assert page.text_content("#status") == "503 ServiceUnavailable: recorded only"
    # the age slider moves the number input and re-predicts
    page.focus("#r0")
    page.keyboard.press("ArrowRight")
    assert page.input_value("#f0") == "42.1"
    row = wait_for_bodies(page, bodies, 2)[1]["instances"][0]
    assert row["age"] == 42.1 and row["n_rooms"] == 3
    page.focus("#r1")  # integer slider: whole steps
    page.keyboard.press("ArrowRight")
    assert page.input_value("#f1") == "4"
    assert wait_for_bodies(page, bodies, 3)[2]["instances"][0]["n_rooms"] == 4
    page.uncheck("#f3")  # boolean
    assert wait_for_bodies(page, bodies, 4)[3]["instances"][0]["is_member"] is False
    page.select_option("#f4", "blue")  # category
    assert wait_for_bodies(page, bodies, 5)[4]["instances"][0]["color"] == "blue"
    page.fill("#f5", "Nantes")  # free text: sent on Predict
    page.click("#predict")
    last = wait_for_bodies(page, bodies, 6)[5]
    assert last == {"instances": [{
        "age": 42.1, "n_rooms": 4, "visits": 7, "is_member": False, "color": "blue",
        "city": "Nantes", "<img src=x onerror=alert(1)>": 0.5, "plan": "basic"}],
        "probabilities": True}
    assert all(path == "/model" and ctype == "application/json" for path, ctype, _ in bodies)
    page.screenshot(path=os.path.join(PROJECT_DIR, "build", "try-it-typed.png"), full_page=True)


def test_a_text_model_sends_texts(open_page, serve_card):
    url, bodies = serve_card(TEXT_CARD)
    page = open_page(url + "/").page
    assert wait_for_bodies(page, bodies, 1)[0] == {"instances": ["a fine <film> & more"],
                                                  "probabilities": True}
    page.fill("#f0", "dull, \"long\"\nand slow")
    page.click("#predict")
    assert wait_for_bodies(page, bodies, 2)[1]["instances"] == ["dull, \"long\"\nand slow"]
    page.fill("#csv", "first text\n\nsecond, with a comma\n")  # batch: one text per line
    page.click("#run")
    assert wait_for_bodies(page, bodies, 3)[2] == {
        "instances": ["first text", "second, with a comma"], "probabilities": True}


def test_the_csp_is_enforced_a_changed_script_does_not_run(open_page, serve_card):
    """Control: the same page with one character of its script changed,
    under the same CSP header, is refused by Chromium (so the pages above ran
    because their hash matched, and a violation would have been seen)."""
    url, bodies = serve_card(TYPED_CARD)
    w = open_page(url + "/tampered")
    w.page.wait_for_timeout(500)
    assert w.csp_violations(), w.console
    assert "script-src" in w.csp_violations()[0]
    assert bodies == []  # the script never ran: no prediction on load
    assert w.page.text_content("#endpoint") == "model"  # not rewritten by the script
