"""Each request's log line is a CloudWatch Embedded Metric Format record.

The lines come from the real app (Chalice's test client, ``LOG_REQUESTS``
on), are validated against the EMF JSON schema AWS publishes and the
specification's prose rules (tests/emf.py), and must publish the documented
namespace, dimensions and metrics with the request's values.
"""
import json

import pytest

from chalicelib.ops import metrics
from chalicelib.protocols import service, wrapper
from tests import emf
from tests.conftest import IRIS_ROWS

FUNCTION = "sklearn-serverless-prod"


@pytest.fixture
def logged(serve, capsys, monkeypatch):
    """``logged(post=..., **env)`` -> the EMF records the requests wrote."""
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", FUNCTION)
    monkeypatch.delenv(metrics.NAMESPACE_ENV, raising=False)

    def _logged(*bodies, **env):
        api = serve(LOG_REQUESTS="true", **env)
        capsys.readouterr()
        for body in bodies:
            api.post(body)
        return emf.records(capsys.readouterr().out)

    return _logged


def _dims(model_name, model_version, status_class):
    return [
        (("function", FUNCTION),),
        (("function", FUNCTION), ("model_name", model_name), ("model_version", model_version)),
        (("function", FUNCTION), ("model_name", model_name), ("model_version", model_version),
         ("route", "POST /model"), ("status_class", status_class)),
    ]


def test_every_request_line_is_a_valid_emf_record_with_the_documented_metrics(logged):
    bodies = [{"instances": IRIS_ROWS}, "{not json", {"instances": [[1, 2]]},
              {"instances": [[1, 2, 3, 4]] * 11}]
    records = logged(*bodies, MAX_ROWS="10")
    assert len(records) == len(bodies)
    for record in records:
        emf.validate(record)
    expected = [  # status, status class, rows, errors_4xx, errors_5xx
        (200, "2xx", 3, 0, 0), (400, "4xx", 0, 1, 0), (422, "4xx", 0, 1, 0),
        (413, "4xx", 0, 1, 0)]
    for record, (status, status_class, rows, e4, e5) in zip(records, expected):
        assert record["status"] == status
        published = emf.series(record)
        names = {(name, unit) for _, name, unit, _ in published}
        assert names == set(metrics.REQUEST_METRICS)
        assert {ns for ns, *_ in published} == {metrics.DEFAULT_NAMESPACE}
        assert sorted({dims for *_, dims in published}) == sorted(
            _dims("iris-classifier", "1.0.0", status_class))
        for (_, name, _, _), value in published.items():
            assert value == {"requests": 1, "rows": rows, "errors_4xx": e4,
                             "errors_5xx": e5}.get(name, value)
        assert 0 <= record["latency_ms"] < 60_000
        # the log line's own keys are still there for readers and queries
        assert record["route"] == "POST /model" and record["model_version"] == "1.0.0"


def test_a_model_that_did_not_load_counts_5xx_and_an_init_failure(logged, tmp_path, capsys):
    (tmp_path / "model.json").write_text("{}")
    records = logged({"instances": IRIS_ROWS}, MODEL_DIR=str(tmp_path))
    [record] = records
    emf.validate(record)
    assert record["status"] == 503 and record["errors_5xx"] == 1 and record["errors_4xx"] == 0
    assert record["status_class"] == "5xx"
    assert record["model_name"] == record["model_version"] == metrics.UNAVAILABLE


def test_init_failure_record(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", FUNCTION)
    capsys.readouterr()
    service.from_environment({"MODEL_DIR": str(tmp_path)})  # no model there
    [record] = emf.records(capsys.readouterr().out)
    emf.validate(record)
    assert emf.series(record) == {(metrics.DEFAULT_NAMESPACE, metrics.INIT_FAILURE_METRIC,
                                   "Count", (("function", FUNCTION),)): 1}
    assert "model.json" in record["reason"]
    # a configuration error is an init failure too; a model that loads is not
    service.from_environment({"MAX_ROWS": "-1"})
    assert [r[metrics.INIT_FAILURE_METRIC] for r in emf.records(capsys.readouterr().out)] == [1]
    service.from_environment({})
    assert emf.records(capsys.readouterr().out) == []


def test_namespace_and_function_come_from_the_environment(logged, monkeypatch):
    monkeypatch.setenv(metrics.NAMESPACE_ENV, "Team/Models")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "stack-APIHandler-XYZ")
    for log in wrapper._ROUTE_LOGS.values():  # rendered once per model: start afresh
        log._format = None
    [record] = logged({"instances": IRIS_ROWS})
    emf.validate(record)
    assert {ns for ns, *_ in emf.series(record)} == {"Team/Models"}
    assert record["function"] == "stack-APIHandler-XYZ"


def test_percent_signs_in_a_model_name_do_not_break_the_format(logged, model_copy):
    card = json.loads((model_copy / "model.json").read_text())
    card.update(name="churn 100%s", version="2%d")
    (model_copy / "model.json").write_text(json.dumps(card))
    [record] = logged({"instances": IRIS_ROWS}, MODEL_DIR=str(model_copy))
    emf.validate(record)
    assert (record["model_name"], record["model_version"]) == ("churn 100%s", "2%d")


def test_cold_start_marks_the_first_request_of_an_execution_environment(logged):
    metrics.reset_process()
    records = logged({"instances": IRIS_ROWS}, {"instances": IRIS_ROWS})
    assert [r["cold_start"] for r in records] == [True, False]
    metrics.reset_process()  # what the SnapStart after-restore hook does
    assert [r["cold_start"] for r in logged({"instances": IRIS_ROWS})] == [True]


def test_the_validator_refuses_what_cloudwatch_would_refuse():
    """The checks can fail: broken records are refused."""
    good = {"_aws": {"Timestamp": 1, "CloudWatchMetrics": [
        {"Namespace": "N", "Dimensions": [["d"]], "Metrics": [{"Name": "m", "Unit": "Count"}]}]},
        "d": "x", "m": 1}
    emf.validate(good)
    broken = [
        {k: v for k, v in good.items() if k != "m"},                # metric target missing
        {**good, "d": 3},                                            # dimension not a string
        {**good, "m": "1"},                                          # metric not a number
        {**good, "_aws": {"CloudWatchMetrics": good["_aws"]["CloudWatchMetrics"]}},  # no Timestamp
        {**good, "_aws": {"Timestamp": 1, "CloudWatchMetrics": [
            {"Namespace": "N", "Dimensions": [["d"]], "Metrics": [{"Name": "m", "Unit": "ms"}]}]}},
    ]
    for record in broken:
        with pytest.raises(Exception):
            emf.validate(record)


def test_the_docs_logs_insights_query_reads_fields_the_records_have(logged):
    """The query itself needs CloudWatch; what it reads must exist, with the
    types its functions need, in the records the app writes."""
    import re
    from pathlib import Path
    page = (Path(__file__).resolve().parent.parent / "docs" / "operate.md").read_text()
    query = page.split("<!-- logs-insights-query -->", 1)[1].split("```")[1]
    [(filter_field, literal)] = re.findall(r'filter (\w+) = "([^"]+)"', query)
    numeric = re.findall(r"(?:pct|sum|avg|max|min)\((\w+)", query)
    grouped = re.findall(r"\bby (\w+)", query)
    assert numeric and grouped
    [record] = logged({"instances": IRIS_ROWS})
    assert record[filter_field] == literal
    for field in numeric:
        assert isinstance(record[field], (int, float)) and not isinstance(record[field], bool)
    for field in grouped:
        assert isinstance(record[field], str)


def test_chalice_local_writes_a_short_line_and_lambda_keeps_its_record(serve, capsys, monkeypatch):
    """``make serve`` (Chalice's CLI, no Lambda function name): one short
    line a person can read per request; the same CLI variable with a Lambda
    function name set (as in the deployed function's environment) still
    writes the EMF record."""
    monkeypatch.setenv("AWS_CHALICE_CLI_MODE", "true")
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    metrics.reset_process()
    api = serve(LOG_REQUESTS="true")
    capsys.readouterr()
    api.post({"instances": IRIS_ROWS})
    api.post("{not json")
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" ms")[0].rsplit(", ", 1)[0] for line in lines] == [
        "POST /model -> 200, 3 rows", "POST /model -> 400, 0 rows"]
    assert lines[0].endswith(" ms (first request)") and lines[1].endswith(" ms")
    assert all(len(line) < 80 and "{" not in line for line in lines)
    assert emf.records("\n".join(lines)) == []

    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", FUNCTION)
    api = serve(LOG_REQUESTS="true")
    capsys.readouterr()
    api.post({"instances": IRIS_ROWS})
    [record] = emf.records(capsys.readouterr().out)
    emf.validate(record)
    assert record["status"] == 200 and record["function"] == FUNCTION
