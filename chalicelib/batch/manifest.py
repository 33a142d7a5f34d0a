"""The job's status object, ``<output prefix><name>.manifest.json``: rows
in, scored and failed, parts done of total, started and finished, the
model's name, version and sha256, and where the output and error report
are. The splitter writes it; every worker adds its part with a conditional
write (``If-Match`` on the ETag it read), so concurrent workers never lose
each other's counts and a redelivered part is never counted twice."""
import json
from datetime import datetime, timezone

from botocore.exceptions import ClientError

RUNNING, COMPLETE, FAILED = "running", "complete", "failed"
_CONFLICTS = ("PreconditionFailed", "ConditionalRequestConflict", "412", "409")
_ATTEMPTS = 50


def now():
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def started(job, task_fields, model, keys, bucket, parts_total):
    """The manifest of a job the splitter has just cut into parts."""
    return {"job": job, "status": RUNNING, "input": "s3://%s/%s" % (bucket, task_fields["key"]),
            "input_etag": task_fields["etag"], "input_bytes": task_fields["size"],
            "output": "s3://%s/%s" % (bucket, keys.output),
            "errors": "s3://%s/%s" % (bucket, keys.errors),
            "options": task_fields["options"], "model": model,
            "parts_total": parts_total, "parts_done": 0,
            "rows_in": 0, "rows_scored": 0, "rows_failed": 0,
            "started": now(), "finished": None, "parts": {}}


def failed(job, bucket, key, keys, reason):
    return {"job": job, "status": FAILED, "reason": reason, "input": "s3://%s/%s" % (bucket, key),
            "output": None, "errors": None, "parts_total": 0, "parts_done": 0,
            "rows_in": 0, "rows_scored": 0, "rows_failed": 0,
            "started": now(), "finished": now(), "parts": {}}


def read(s3, bucket, key):
    """``(manifest, etag)``, or ``(None, None)`` when there is none."""
    try:
        got = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None, None
        raise
    return json.loads(got["Body"].read()), got["ETag"]


def write(s3, bucket, key, manifest, etag=None):
    """Put the manifest; with ``etag``, only over that version (else
    False: someone else wrote it first)."""
    extra = {"IfMatch": etag} if etag else {}
    try:
        s3.put_object(Bucket=bucket, Key=key, ContentType="application/json",
                      Body=json.dumps(manifest, indent=1, sort_keys=True).encode("utf-8"), **extra)
    except ClientError as exc:
        if etag and _conflict(exc):
            return False
        raise
    return True


def update(s3, bucket, key, change):
    """Read, ``change(manifest)`` -> the new manifest or None (nothing to
    write), conditional put; again on a conflict. Returns what is stored."""
    for _ in range(_ATTEMPTS):
        manifest, etag = read(s3, bucket, key)
        if manifest is None:
            return None
        new = change(manifest)
        if new is None or write(s3, bucket, key, new, etag):
            return new or manifest
    raise RuntimeError("manifest %s: %d conflicting writers in a row" % (key, _ATTEMPTS))


def _conflict(exc):
    error = exc.response.get("Error", {})
    status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    return error.get("Code") in _CONFLICTS or status in ("409", "412")


def with_failed_attempt(manifest, job, part, reason):
    """The manifest with the reason a delivery of ``part`` failed (the one
    the dead-letter sweep reports if the task never succeeds), or None
    when there is nothing to record (another job's, no longer running, or
    the part is done)."""
    if manifest.get("job") != job or manifest["status"] != RUNNING \
            or str(part) in manifest["parts"]:
        return None
    attempts = dict(manifest.get("failed_attempts", {}))
    count = attempts.get(str(part), {}).get("count", 0) + 1
    attempts[str(part)] = {"reason": reason, "count": count, "last": now()}
    return dict(manifest, failed_attempts=attempts)


def with_failed_range(manifest, task, reason):
    """The manifest of a job whose range task was moved to the dead-letter
    queue: ``failed``, with the range and the reason; None when it says so
    already, is another job's, or the part got done after all."""
    if manifest.get("job") != task.job or str(task.part) in manifest["parts"] \
            or manifest["status"] == COMPLETE:
        return None
    ranges = list(manifest.get("failed_ranges", []))
    if any(r["part"] == task.part for r in ranges):
        return None
    ranges.append({"part": task.part, "start": task.start, "end": task.end, "reason": reason})
    changed = dict(manifest, failed_ranges=ranges)
    if manifest["status"] == RUNNING:
        changed.update(status=FAILED, finished=now(),
                       reason="range %d of %d (bytes %d-%d) failed on every delivery and was "
                              "moved to the dead-letter queue: %s"
                              % (task.part, task.parts, task.start, task.end, reason))
    return changed


def with_part(manifest, job, part, stats):
    """The manifest with one more part done, or None when this part is
    counted already or the manifest is another job's (a newer upload)."""
    if manifest.get("job") != job or str(part) in manifest["parts"]:
        return None
    manifest = dict(manifest, parts=dict(manifest["parts"], **{str(part): stats}))
    manifest["parts_done"] = len(manifest["parts"])
    for name in ("rows_in", "rows_scored", "rows_failed"):
        manifest[name] = sum(p[name] for p in manifest["parts"].values())
    return manifest
