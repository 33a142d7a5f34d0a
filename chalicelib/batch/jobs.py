"""The two event handlers of a batch job, as app.py declares them.

:meth:`Batch.split` takes an S3 ``ObjectCreated`` event: for each new input
object it reads the header (CSV), plans the ranges, writes the manifest and
sends one range task per range to the queue. :meth:`Batch.work` takes one
range task: a ranged GET, the rows scored, the part and its error report
written (the same keys on a redelivery, so a retried task rewrites the
same part), the part counted in the manifest, and, when it was the last,
the job assembled. Whatever cannot be a job (unknown format, bad header,
no model) is written to the manifest as the reason, not raised; a task
that cannot be read raises, and the queue's redrive policy moves it to the
dead-letter queue.
"""
import csv
import json
import logging
from urllib.parse import unquote_plus

from chalicelib.batch import assemble, manifest, ranges
from chalicelib.batch.layout import (CONTENT_TYPES, CSV, JobKeys, JobRefused, Options, Task,
                                     job_id)
from chalicelib.batch.records import Scorer, Writer, row_chunks
from chalicelib.http.errors import ServiceError
from chalicelib.schema.parsing import csv_header, decode_utf8, is_csv_header

log = logging.getLogger(__name__)
_SEND_BATCH = 10  # SendMessageBatch's limit
# Long enough for one sweep to read the dead-letter queue through once.
_SWEEP_HIDE_S = 60


class Clients:
    """The S3 and SQS clients, made on first use (botocore reads the
    region, credentials and any ``AWS_ENDPOINT_URL`` from the environment)."""

    def __init__(self):
        self._s3 = self._sqs = None

    @property
    def s3(self):
        if self._s3 is None:
            import boto3
            self._s3 = boto3.client("s3")
        return self._s3

    @property
    def sqs(self):
        if self._sqs is None:
            import boto3
            self._sqs = boto3.client("sqs")
        return self._sqs


class Batch:
    def __init__(self, config, model, clients=None, min_part_bytes=assemble.MIN_PART_BYTES):
        self.config = config
        self.model = model
        self.clients = clients or Clients()
        self.min_part_bytes = min_part_bytes
        self._queue_url = None

    # --- the splitter -----------------------------------------------------

    def split(self, event):
        """An S3 event (a bucket notification's ``{"Records": [...]}`` or
        EventBridge's ``Object Created``) -> the job ids started."""
        started = []
        for bucket, key, etag, sequencer in _created_objects(event):
            if not key.startswith(self.config.input_prefix) or key.endswith("/"):
                continue
            job = job_id(bucket, key, etag, sequencer)
            if self._start(bucket, key, job):
                started.append(job)
        return started

    def _start(self, bucket, key, job):
        s3 = self.clients.s3
        keys = JobKeys.of(self.config, key, job)
        existing, _ = manifest.read(s3, bucket, keys.manifest)
        try:
            head = s3.head_object(Bucket=bucket, Key=key)
            options = Options.of(key, head.get("ContentType"), head.get("Metadata"))
            model = self.model.ready()
            size = head["ContentLength"]
            etag = head["ETag"]
            get = _ranged_get(s3, bucket, key, etag)
            header, header_at = self._header(options, get, size, model)
        except (JobRefused, ServiceError) as exc:
            reason = getattr(exc, "message", None) or str(exc)
            log.warning("batch job %s for s3://%s/%s refused: %s", job, bucket, key, reason)
            manifest.write(s3, bucket, keys.manifest,
                           manifest.failed(job, bucket, key, keys, reason))
            return False
        plan = ranges.plan(size, self.config.range_bytes)
        if existing is None or existing.get("job") != job:  # a retried event keeps its counts
            fields = {"key": key, "etag": etag, "size": size,
                      "options": {"input": options.input_format, "output": options.output_format,
                                  "probabilities": options.probabilities, "join": options.join}}
            identity = {"name": model.card.name, "version": model.card.version,
                        "sha256": model.card.sha256, "runtime": model.runtime}
            manifest.write(s3, bucket, keys.manifest,
                           manifest.started(job, fields, identity, keys, bucket, len(plan)))
        tasks = [Task(job=job, bucket=bucket, key=key, etag=etag, size=size, part=i + 1,
                      parts=len(plan), start=start, end=end, input_format=options.input_format,
                      output_format=options.output_format, probabilities=options.probabilities,
                      join=options.join, header=header, header_at=header_at)
                 for i, (start, end) in enumerate(plan)]
        self._send(tasks)
        log.info("batch job %s: s3://%s/%s, %d bytes in %d ranges", job, bucket, key, size,
                 len(plan))
        return True

    def _header(self, options, get, size, model):
        """The CSV header's fields and byte offset, or ``(None, -1)``."""
        if options.input_format != CSV:
            return None, -1
        try:
            at, line = ranges.first_line(get, size)
        except ValueError as exc:
            raise JobRefused(str(exc)) from None
        if at < 0:
            return None, -1
        text = decode_utf8(line).rstrip("\r\n")
        try:
            fields = next(csv.reader([text], strict=True))
        except csv.Error as exc:
            raise JobRefused("malformed CSV: line 1: %s" % exc) from None
        if not is_csv_header(fields, model.schema):
            return None, -1
        return csv_header(fields, model.schema), at

    def _send(self, tasks):
        sqs = self.clients.sqs
        for i in range(0, len(tasks), _SEND_BATCH):
            entries = [{"Id": str(n), "MessageBody": task.to_json()}
                       for n, task in enumerate(tasks[i:i + _SEND_BATCH])]
            sent = sqs.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
            if sent.get("Failed"):
                raise RuntimeError("SQS refused range tasks: %s" % sent["Failed"])

    @property
    def queue_url(self):
        if self._queue_url is None:
            self._queue_url = self.clients.sqs.get_queue_url(
                QueueName=self.config.queue)["QueueUrl"]
        return self._queue_url

    # --- the worker -------------------------------------------------------

    def work(self, message_id, body):
        """One range task (an SQS message's id and body). Raises on a task
        that cannot be done, so the queue redelivers it (and, after its
        redrive limit, moves it to the dead-letter queue); the reason is
        first written to the job's manifest, for the dead-letter sweep."""
        task = Task.from_json(body)
        try:
            self._work(message_id, task)
        except Exception as exc:
            self._record_failed_attempt(task, "%s: %s" % (type(exc).__name__, exc))
            raise

    def _record_failed_attempt(self, task, reason):
        keys = JobKeys.of(self.config, task.key, task.job)
        try:
            manifest.update(self.clients.s3, task.bucket, keys.manifest,
                            lambda m: manifest.with_failed_attempt(m, task.job, task.part,
                                                                   reason[:1000]))
        except Exception:  # the task's own failure is the one to raise
            log.exception("could not record the failure of part %d of job %s", task.part,
                          task.job)

    def _work(self, message_id, task):
        s3 = self.clients.s3
        keys = JobKeys.of(self.config, task.key, task.job)
        current, _ = manifest.read(s3, task.bucket, keys.manifest)
        if current is None or current.get("job") != task.job:
            log.info("range task of job %s dropped: the manifest is another job's", task.job)
            return
        if current["status"] != manifest.RUNNING:
            return
        if str(task.part) not in current["parts"]:
            stats = self._score_part(task, keys)
            current = manifest.update(s3, task.bucket, keys.manifest,
                                      lambda m: manifest.with_part(m, task.job, task.part, stats))
        if (current and current.get("job") == task.job and current["status"] == manifest.RUNNING
                and current["parts_done"] == current["parts_total"]):
            if assemble.claim(s3, task.bucket, keys.marker, message_id):
                self._assemble(task, keys)

    def _score_part(self, task, keys):
        s3 = self.clients.s3
        model = self.model.ready()
        owned = ranges.read_owned(_ranged_get(s3, task.bucket, task.key, task.etag),
                                  task.size, task.start, task.end)
        header = task.header if task.input_format == CSV else None
        scorer = Scorer(model, task.input_format, header, task.probabilities,
                        self.config.rows_per_call)
        writer = Writer(task.output_format, task.input_format, header, model.classes,
                        task.probabilities, task.join, model.schema.feature_names)
        # Chunk by chunk, keeping only the output's bytes: the rows of a
        # whole range as objects would not fit the function's memory.
        out = [writer.header().encode("utf-8")] if task.part == 1 else []
        failed, rows_in, rows_scored = [], 0, 0
        for rows, bad in row_chunks(owned.data, owned.lines_before, task.header_at, owned.first,
                                    self.config.rows_per_call):
            scored = scorer.score(rows)
            out.append(writer.write(scored).encode("utf-8"))
            failed += bad + scored.failed
            rows_in += len(rows) + len(bad)
            rows_scored += len(scored.rows)
        owned.data = None
        data = b"".join(out)
        del out
        failed.sort()
        s3.put_object(Bucket=task.bucket, Key=keys.part(task.part), Body=data)
        errors = "".join(json.dumps({"line": line, "reason": reason}, separators=(",", ":")) + "\n"
                         for line, reason in failed)
        s3.put_object(Bucket=task.bucket, Key=keys.part_errors(task.part),
                      Body=errors.encode("utf-8"))
        return {"rows_in": rows_in, "rows_scored": rows_scored,
                "rows_failed": len(failed), "newlines": owned.newlines,
                "bytes": len(data)}

    def _assemble(self, task, keys):
        s3 = self.clients.s3
        current, _ = manifest.read(s3, task.bucket, keys.manifest)
        parts = current["parts"]
        sources = [(keys.part(int(n)), parts[n]["bytes"]) for n in sorted(parts, key=int)]
        size = assemble.concatenate(s3, task.bucket, sources, keys.output,
                                    CONTENT_TYPES[task.output_format], self.min_part_bytes)
        assemble.error_report(s3, task.bucket, keys, parts)

        def finish(m):
            if m.get("job") != task.job or m["status"] != manifest.RUNNING:
                return None
            return dict(m, status=manifest.COMPLETE, finished=manifest.now(), output_bytes=size)
        manifest.update(s3, task.bucket, keys.manifest, finish)
        for n in parts:  # the parts are copied; the marker stays, so nothing assembles again
            for key in (keys.part(int(n)), keys.part_errors(int(n))):
                s3.delete_object(Bucket=task.bucket, Key=key)
        log.info("batch job %s complete: %s", task.job, keys.output)


    # --- the dead-letter sweep ------------------------------------------

    def sweep_dead_letters(self, limit=1000):
        """Mark the job of every range task in the dead-letter queue
        ``failed``, with the range and the last reason a delivery failed.
        The messages stay in the queue (made visible again): its depth is
        what the alarm watches, and an operator may redrive them. Returns
        the job ids marked by this sweep."""
        sqs = self.clients.sqs
        url = sqs.get_queue_url(QueueName=self.config.dead_letter_queue)["QueueUrl"]
        seen, handles, marked = set(), [], []
        try:
            while len(seen) < limit:
                got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                          VisibilityTimeout=_SWEEP_HIDE_S).get("Messages", [])
                new = [m for m in got if m["MessageId"] not in seen]
                if not new:
                    break
                for message in new:
                    seen.add(message["MessageId"])
                    handles.append(message["ReceiptHandle"])
                    job = self._fail_job(message["Body"])
                    if job:
                        marked.append(job)
        finally:
            for i in range(0, len(handles), _SEND_BATCH):
                sqs.change_message_visibility_batch(QueueUrl=url, Entries=[
                    {"Id": str(n), "ReceiptHandle": h, "VisibilityTimeout": 0}
                    for n, h in enumerate(handles[i:i + _SEND_BATCH])])
        return marked

    def _fail_job(self, body):
        try:
            task = Task.from_json(body)
        except (TypeError, ValueError) as exc:
            log.warning("dead-letter message is no range task, left for an operator: %s", exc)
            return None
        keys = JobKeys.of(self.config, task.key, task.job)
        changed = []

        def fail(m):
            attempt = (m.get("failed_attempts") or {}).get(str(task.part))
            reason = attempt["reason"] if attempt else (
                "no failure was recorded: the worker was stopped before it could say why "
                "(its timeout or memory limit)")
            new = manifest.with_failed_range(m, task, reason)
            changed[:] = [new is not None and new["failed_ranges"][-1]["reason"]]
            return new
        manifest.update(self.clients.s3, task.bucket, keys.manifest, fail)
        if not (changed and changed[0]):  # said so already, another job's, or no manifest
            return None
        log.warning("batch job %s failed: part %d moved to the dead-letter queue: %s",
                    task.job, task.part, changed[0])
        return task.job


def _created_objects(event):
    """``(bucket, key, etag, sequencer)`` of each object an event says was
    created. A bucket notification URL-encodes its keys; EventBridge's
    events carry them as they are."""
    if event.get("source") == "aws.s3" and "detail" in event:
        if event.get("detail-type") == "Object Created":
            detail = event["detail"]
            obj = detail["object"]
            yield (detail["bucket"]["name"], obj["key"], obj.get("etag") or obj.get("eTag"),
                   obj.get("sequencer"))
        return
    for record in event.get("Records", []):
        if record.get("eventName", "").startswith("ObjectCreated"):
            s3 = record["s3"]
            yield (s3["bucket"]["name"], unquote_plus(s3["object"]["key"]),
                   s3["object"].get("eTag"), s3["object"].get("sequencer"))


def _ranged_get(s3, bucket, key, etag):
    """``get(first, last)``: those bytes of that version of the object
    (``If-Match``: an object replaced mid-job fails the task, not mixes)."""
    def get(first, last):
        if last < first:
            return b""
        return s3.get_object(Bucket=bucket, Key=key, IfMatch=etag,
                             Range="bytes=%d-%d" % (first, last))["Body"].read()
    return get
