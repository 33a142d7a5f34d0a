"""Batch transform on S3, fanned out over SQS, driven as Lambda drives it,
against moto's S3 and SQS on loopback (tools/fixtures/batch_lambda.py): the object
put -> the bucket's notification -> the splitter -> range tasks received
from the queue -> the worker -> one assembled output, compared with what
POST /model answers for the same rows."""
import csv
import io
import json
import random
import threading
import time
from unittest import mock

import pytest
from chalice.test import Client

from chalicelib.batch import ranges
from tools.fixtures import batch_lambda
from tools.fixtures.aws_emulator import ACCOUNT_ID, REGION, running_emulator

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
# Ranges of about half a KiB: a file of a few KiB is cut into many parts.
RANGE_MB = "0.0005"
RANGE_BYTES = int(0.0005 * 1024 * 1024)
# Small enough that some parts are copied server-side and some are joined
# first (S3's 5 MiB floor, lowered in the emulator and the assembler alike).
MIN_PART = 256


@pytest.fixture(scope="module")
def aws():
    with running_emulator() as emulator, \
            mock.patch("moto.s3.models.S3_UPLOAD_PART_MIN_SIZE", MIN_PART):
        yield emulator


@pytest.fixture
def stage(aws, request):
    name = request.node.name.replace("_", "-").lower()[:40].strip("-")
    s3, sqs = aws.client("s3"), aws.client("sqs")
    urls = batch_lambda.create_stage_resources(s3, sqs, name, name + "-q")
    with batch_lambda.batch_app(aws.endpoint_url, BATCH_BUCKET=name, BATCH_QUEUE=name + "-q",
                                BATCH_RANGE_MB=RANGE_MB, BATCH_ROWS_PER_CALL="7") as module:
        module.BATCH_JOBS.min_part_bytes = MIN_PART
        yield Stage(module, s3, sqs, name, urls)


class Stage:
    def __init__(self, module, s3, sqs, bucket, urls):
        self.module, self.s3, self.sqs, self.bucket, self.urls = module, s3, sqs, bucket, urls
        self.queue_arn = "arn:aws:sqs:%s:%s:%s-q" % (REGION, ACCOUNT_ID, bucket)

    def put(self, name, body, content_type=None, **metadata):
        extra = {"ContentType": content_type} if content_type else {}
        self.s3.put_object(Bucket=self.bucket, Key="batch/in/" + name, Body=body,
                           Metadata=metadata, **extra)
        assert batch_lambda.deliver_s3_events(self.module, self.sqs, self.urls["events"]) == 1

    def drain(self):
        return batch_lambda.drain(self.module, self.sqs, self.urls["tasks"], self.queue_arn)

    def get(self, key):
        return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def result(self, name):
        manifest = json.loads(self.get("batch/out/%s.manifest.json" % name))
        output = self.get("batch/out/%s.out" % name).decode()
        errors = [json.loads(line) for line in
                  self.get("batch/out/%s.errors.jsonl" % name).decode().splitlines()]
        return manifest, output, errors

    def work_left(self, job):
        listed = self.s3.list_objects_v2(Bucket=self.bucket, Prefix="batch/work/%s/" % job)
        return sorted(o["Key"].rsplit("/", 1)[1] for o in listed.get("Contents", []))

    def endpoint(self, csv_body, probabilities=False):
        with Client(self.module.app) as client:
            reply = client.http.post("/model" + ("?probabilities=true" if probabilities else ""),
                                     headers={"Content-Type": "text/csv"}, body=csv_body)
        assert reply.status_code == 200, reply.body
        return json.loads(reply.body)


def iris_rows(n, seed):
    rng = random.Random(seed)
    return [[round(rng.uniform(4.3, 7.9), 1), round(rng.uniform(2.0, 4.4), 1),
             round(rng.uniform(1.0, 6.9), 1), round(rng.uniform(0.1, 2.5), 1)] for _ in range(n)]


def csv_text(rows):
    return "".join(",".join(map(str, row)) + "\n" for row in rows)


def test_a_csv_with_header_and_bad_rows_comes_back_whole_and_as_the_endpoint_scores_it(stage):
    rows = iris_rows(600, seed=1)
    lines = ["petal_width,petal_length,sepal_width,sepal_length"]  # any order under a header
    bad = {17: "5.1,abc,1.4,0.2", 95: "1,2,3", 411: "1e999,1,1,1"}
    # the line numbers as a person counts them in the file (the header is line 1)
    for i, row in enumerate(rows):
        number = len(lines) + 1
        lines.append(bad[number] if number in bad else ",".join(map(str, row[::-1])))
    body = "\n".join(lines) + "\n"
    assert len(body) % RANGE_BYTES and len(body) > 10 * RANGE_BYTES
    stage.put("flowers.csv", body.encode(), join="true")
    ok, failed = stage.drain()
    manifest, output, errors = stage.result("flowers.csv")

    assert manifest["status"] == "complete", manifest
    assert manifest["parts_done"] == manifest["parts_total"] == ok > 10 and failed == 0
    assert (manifest["rows_in"], manifest["rows_scored"], manifest["rows_failed"]) == \
        (len(lines) - 1, len(lines) - 1 - len(bad), len(bad))
    assert manifest["model"]["name"] == "iris-classifier" and len(manifest["model"]["sha256"]) == 64
    assert [e["line"] for e in errors] == sorted(bad)
    assert errors[0]["reason"] == 'row, column 2 (petal_length): expected a number, got "abc"'
    assert "expected 4 values" in errors[1]["reason"]
    assert "finite" in errors[2]["reason"]

    out = list(csv.reader(io.StringIO(output)))
    assert out[0] == lines[0].split(",") + ["prediction"]
    good = [line for number, line in enumerate(lines[1:], start=2) if number not in bad]
    # joined: each input line exactly, in order, then its prediction
    assert [",".join(r[:4]) for r in out[1:]] == good
    expected = stage.endpoint(lines[0] + "\n" + "\n".join(good) + "\n")["predictions"]
    assert [r[4] for r in out[1:]] == expected
    assert stage.work_left(manifest["job"]) == ["assembly"]


def test_json_lines_with_probabilities_crlf_a_line_longer_than_a_range_and_no_final_newline(stage):
    rows = iris_rows(120, seed=2)
    records = [json.dumps(dict(zip(FEATURES, row))) for row in rows]
    # valid JSON padded past several ranges: owned by the range it starts in
    records[40] = records[40][:-1] + " " * (3 * RANGE_BYTES) + "}"
    records[41] = "[6.3, 2.8, 5.1, 1.5]"  # a row as a list, in feature order
    records[70] = '{"sepal_length": 5.0}'  # missing features
    records[71] = "{not json"
    rows[41] = [6.3, 2.8, 5.1, 1.5]
    body = "\r\n".join(records)  # CRLF, and no newline after the last line
    stage.put("flowers.jsonl", body.encode(), output="jsonl", probabilities="true")
    stage.drain()
    manifest, output, errors = stage.result("flowers.jsonl")

    assert manifest["status"] == "complete" and manifest["rows_failed"] == 2
    assert [e["line"] for e in errors] == [71, 72]
    assert "missing feature" in errors[0]["reason"] and "malformed JSON" in errors[1]["reason"]
    got = [json.loads(line) for line in output.splitlines()]
    good = [row for i, row in enumerate(rows) if i not in (70, 71)]
    assert len(got) == len(good) == manifest["rows_scored"]
    expected = stage.endpoint(csv_text(good), probabilities=True)
    assert [g["prediction"] for g in got] == expected["predictions"]
    for g, p in zip(got, expected["probabilities"]):
        assert list(g["probabilities"]) == expected["classes"]
        assert list(g["probabilities"].values()) == pytest.approx(p, abs=1e-12)


@pytest.mark.parametrize("body, out", [(b"", "prediction\n"),
                                       (b"sepal_length,sepal_width,petal_length,petal_width\r\n",
                                        "prediction\n"),
                                       (b"\n\n   \n", "prediction\n")])
def test_an_empty_file_or_one_with_only_a_header_completes_with_no_rows(stage, body, out):
    stage.put("empty.csv", body)
    stage.drain()
    manifest, output, errors = stage.result("empty.csv")
    assert manifest["status"] == "complete"
    assert (manifest["rows_in"], manifest["rows_scored"], manifest["rows_failed"]) == (0, 0, 0)
    assert output == out and errors == []


def test_a_redelivered_task_and_a_worker_crashed_mid_range_neither_lose_nor_duplicate(stage):
    rows = iris_rows(150, seed=3)
    body = csv_text(rows).encode()
    stage.put("twice.csv", body)
    sqs, url = stage.sqs, stage.urls["tasks"]

    # a worker that scores its range and dies before it acknowledges: the
    # message comes back and is done again
    first = batch_lambda.receive(sqs, url, 1)
    stage.module.batch_work(batch_lambda.sqs_event(first, stage.queue_arn), None)
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=first[0]["ReceiptHandle"],
                                  VisibilityTimeout=0)
    # a worker that dies mid-range: after writing its part, before counting it
    real_s3 = stage.module.BATCH_JOBS.clients.s3
    crashes = []

    class Crashing:
        def __getattr__(self, name):
            return getattr(real_s3, name)

        def put_object(self, **kwargs):
            if kwargs["Key"].endswith(".errors.jsonl") and "/work/" in kwargs["Key"] \
                    and not crashes:
                crashes.append(kwargs["Key"])
                raise RuntimeError("the worker's Lambda ran out of time")
            return real_s3.put_object(**kwargs)

    stage.module.BATCH_JOBS.clients._s3 = Crashing()
    try:
        ok, failed = stage.drain()
    finally:
        stage.module.BATCH_JOBS.clients._s3 = real_s3
    assert crashes and failed == 1

    manifest, output, errors = stage.result("twice.csv")
    assert manifest["status"] == "complete" and errors == []
    assert manifest["rows_in"] == manifest["rows_scored"] == len(rows)
    predictions = output.splitlines()[1:]
    assert predictions == stage.endpoint(csv_text(rows))["predictions"]

    # the same task delivered once more after the job completed changes nothing
    again = json.loads(first[0]["Body"])
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(again))
    assert stage.drain() == (1, 0)
    assert stage.result("twice.csv") == (manifest, output, errors)


def test_a_poison_task_ends_in_the_dead_letter_queue(stage):
    stage.sqs.send_message(QueueUrl=stage.urls["tasks"], MessageBody='{"job": "nothing"}')
    ok, failed = stage.drain()
    assert (ok, failed) == (0, 3)  # the redrive policy's maxReceiveCount
    dead = batch_lambda.receive(stage.sqs, stage.urls["dlq"])
    assert [m["Body"] for m in dead] == ['{"job": "nothing"}']
    # a message that is no range task belongs to no job: the sweep leaves it
    # for an operator (and the dead-letter alarm)
    stage.sqs.change_message_visibility(QueueUrl=stage.urls["dlq"], VisibilityTimeout=0,
                                        ReceiptHandle=dead[0]["ReceiptHandle"])
    assert stage.module.BATCH_JOBS.sweep_dead_letters() == []
    assert [m["Body"] for m in batch_lambda.receive(stage.sqs, stage.urls["dlq"])] == \
        ['{"job": "nothing"}']


def _sweep(stage):
    """The dead-letter sweep, invoked as its schedule invokes it."""
    with Client(stage.module.app) as client:
        event = client.events.generate_cw_event(
            source="aws.events", detail_type="Scheduled Event", detail={},
            resources=["arn:aws:events:%s:%s:rule/sweep" % (REGION, ACCOUNT_ID)])
        client.lambda_.invoke("batch_dead_letters", event)


def test_a_range_that_fails_every_delivery_fails_its_job_with_the_range_and_the_reason(stage):
    rows = iris_rows(150, seed=5)
    stage.put("stuck.csv", csv_text(rows).encode())
    real_s3 = stage.module.BATCH_JOBS.clients.s3
    poisoned = []

    class PartTwoFails:
        def __getattr__(self, name):
            return getattr(real_s3, name)

        def put_object(self, **kwargs):
            if kwargs["Key"].endswith("/part-00002.out"):
                poisoned.append(kwargs["Key"])
                raise MemoryError("the range needs more than the function's memory")
            return real_s3.put_object(**kwargs)

    stage.module.BATCH_JOBS.clients._s3 = PartTwoFails()
    try:
        ok, failed = stage.drain()
    finally:
        stage.module.BATCH_JOBS.clients._s3 = real_s3
    assert failed == len(poisoned) == 3  # the redrive policy's maxReceiveCount
    stuck = json.loads(stage.get("batch/out/stuck.csv.manifest.json"))
    assert stuck["status"] == "running" and stuck["parts_done"] == stuck["parts_total"] - 1 == ok
    assert stuck["failed_attempts"]["2"]["count"] == 3
    [dead] = batch_lambda.receive(stage.sqs, stage.urls["dlq"])
    task = json.loads(dead["Body"])
    stage.sqs.change_message_visibility(QueueUrl=stage.urls["dlq"],
                                        ReceiptHandle=dead["ReceiptHandle"], VisibilityTimeout=0)

    _sweep(stage)
    manifest = json.loads(stage.get("batch/out/stuck.csv.manifest.json"))
    reason = "MemoryError: the range needs more than the function's memory"
    assert manifest["status"] == "failed" and manifest["finished"]
    assert manifest["failed_ranges"] == [{"part": 2, "start": task["start"], "end": task["end"],
                                          "reason": reason}]
    assert manifest["reason"] == (
        "range 2 of %d (bytes %d-%d) failed on every delivery and was moved to the dead-letter "
        "queue: %s" % (task["parts"], task["start"], task["end"], reason))
    # the message stays for the alarm and an operator; a later sweep changes nothing
    [again] = batch_lambda.receive(stage.sqs, stage.urls["dlq"])
    assert again["MessageId"] == dead["MessageId"]
    stage.sqs.change_message_visibility(QueueUrl=stage.urls["dlq"],
                                        ReceiptHandle=again["ReceiptHandle"], VisibilityTimeout=0)
    assert stage.module.BATCH_JOBS.sweep_dead_letters() == []
    assert json.loads(stage.get("batch/out/stuck.csv.manifest.json")) == manifest
    # the job's other tasks, delivered late, leave a failed job alone
    stage.sqs.send_message(QueueUrl=stage.urls["tasks"], MessageBody=json.dumps(
        dict(task, part=1, start=0, end=task["start"])))
    assert stage.drain() == (1, 0)
    assert json.loads(stage.get("batch/out/stuck.csv.manifest.json")) == manifest


def test_a_worker_stopped_before_it_could_say_why_fails_its_job_all_the_same(stage):
    stage.put("killed.csv", csv_text(iris_rows(20, seed=6)).encode())
    # a worker killed by its timeout every time records nothing; the redrive
    # policy moves the task on (done here by hand: moto has no Lambda poller)
    [message] = batch_lambda.receive(stage.sqs, stage.urls["tasks"])
    stage.sqs.send_message(QueueUrl=stage.urls["dlq"], MessageBody=message["Body"])
    stage.sqs.delete_message(QueueUrl=stage.urls["tasks"], ReceiptHandle=message["ReceiptHandle"])
    job = json.loads(message["Body"])["job"]
    assert stage.module.BATCH_JOBS.sweep_dead_letters() == [job]
    manifest = json.loads(stage.get("batch/out/killed.csv.manifest.json"))
    assert manifest["status"] == "failed"
    assert manifest["reason"].endswith("no failure was recorded: the worker was stopped before "
                                       "it could say why (its timeout or memory limit)")


def test_a_job_that_cannot_run_says_why_in_its_manifest(stage):
    stage.put("unknown.csv", b"petal_width,colour\n1,red\n")
    assert stage.drain() == (0, 0)
    manifest = json.loads(stage.get("batch/out/unknown.csv.manifest.json"))
    assert manifest["status"] == "failed" and 'unknown feature "colour"' in manifest["reason"]
    stage.put("rows.parquet", b"PAR1")
    manifest = json.loads(stage.get("batch/out/rows.parquet.manifest.json"))
    assert manifest["status"] == "failed" and "input format" in manifest["reason"]


def test_the_cli_submits_a_file_follows_it_and_downloads_the_result(stage, tmp_path, capsys):
    from tools.ops import batch as cli
    rows = iris_rows(200, seed=4)
    source = tmp_path / "customers.csv"
    source.write_text(csv_text(rows) + "1,2\n")
    target = tmp_path / "scored.out"
    argv = ["submit", str(source), "--wait", "--interval", "0.05", "--timeout", "120",
            "--output", "jsonl", "--download", str(target), "--bucket", stage.bucket]
    outcome = []
    worker = threading.Thread(target=lambda: outcome.append(cli.main(argv)))
    worker.start()
    for _ in range(200):  # the splitter's trigger: the upload's notification
        if batch_lambda.deliver_s3_events(stage.module, stage.sqs, stage.urls["events"]):
            break
        time.sleep(0.05)
    stage.drain()
    worker.join(120)
    assert outcome == [0]
    got = [json.loads(line)["prediction"] for line in target.read_text().splitlines()]
    assert got == stage.endpoint(csv_text(rows))["predictions"]
    errors = [json.loads(line) for line in (tmp_path / "scored.errors.jsonl").read_text()
              .splitlines()]
    assert [e["line"] for e in errors] == [201]
    err = capsys.readouterr().err
    assert "/%d parts, 200 rows scored, 1 failed (complete)" % stage.result(
        "customers.csv")[0]["parts_total"] in err and "[" + "#" * cli.BAR_WIDTH + "]" in err


# --- ranges, without AWS: every line owned by exactly one range -------------


@pytest.mark.parametrize("seed", range(30))
def test_ranges_own_every_line_exactly_once(seed):
    rng = random.Random(seed)
    lines = [b"x" * rng.choice([0, 1, 5, 40, 300]) for _ in range(rng.randint(0, 60))]
    data = b"\n".join(lines) + rng.choice([b"", b"\n"])
    size = len(data)
    reads = []

    def get(first, last):
        reads.append((first, last))
        assert 0 <= first <= last < size
        return data[first:last + 1]

    range_bytes = rng.choice([1, 7, 64, 1000])
    joined, numbers = b"", []
    offset = 1
    for start, end in ranges.plan(size, range_bytes):
        owned = ranges.read_owned(get, size, start, end)
        assert owned.data == data[owned.first:owned.first + len(owned.data)]
        joined += owned.data
        pieces = owned.data.split(b"\n") if owned.data else []
        if owned.data.endswith(b"\n"):
            pieces.pop()
        numbers += [offset + owned.lines_before + k for k in range(len(pieces))]
        offset += owned.newlines
    assert joined == data
    expected = data.split(b"\n")
    if data.endswith(b"\n"):
        expected.pop()
    assert numbers == list(range(1, len(expected) + 1))
