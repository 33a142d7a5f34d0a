"""Completion: the parts of a job become one output object, exactly once.

The worker whose part completes the count claims the job's marker object
with a conditional put (``If-None-Match: *``): one claimant, whatever the
races; a redelivery of the claimant's own message (its Lambda died
mid-assembly) resumes. The output is an S3 multipart upload whose parts
are copied server-side from the workers' parts (``UploadPartCopy``); S3
wants every part but the last to be at least 5 MiB, so smaller
neighbours are joined through the assembler first. The error report is
small and rewritten whole, its line numbers made absolute from the
newline counts each worker recorded.
"""
import json

from botocore.exceptions import ClientError

from chalicelib.batch.manifest import _conflict

MIN_PART_BYTES = 5 * 1024 * 1024


def claim(s3, bucket, marker_key, owner):
    """True if ``owner`` holds the job's assembly: it created the marker
    now, or did before (then it is a redelivery resuming)."""
    try:
        s3.put_object(Bucket=bucket, Key=marker_key, IfNoneMatch="*",
                      Body=json.dumps({"owner": owner}).encode("utf-8"))
        return True
    except ClientError as exc:
        if not _conflict(exc):
            raise
    held = json.loads(s3.get_object(Bucket=bucket, Key=marker_key)["Body"].read())
    return held.get("owner") == owner


def line_offsets(parts):
    """``{part: offset}`` so that a part's line k is line ``offset + k`` of
    the input (lines counted from 1)."""
    offsets, seen = {}, 1
    for number in sorted(parts, key=int):
        offsets[number] = seen
        seen += parts[number]["newlines"]
    return offsets


def concatenate(s3, bucket, sources, target, content_type, min_part=MIN_PART_BYTES):
    """Write the objects ``sources`` (``[(key, size)]``, in order) one after
    the other into ``target``. Returns its size."""
    total = sum(size for _, size in sources)
    if total < min_part:
        body = b"".join(_get(s3, bucket, key) for key, size in sources if size)
        s3.put_object(Bucket=bucket, Key=target, Body=body, ContentType=content_type)
        return total
    upload = s3.create_multipart_upload(Bucket=bucket, Key=target, ContentType=content_type)
    upload_id = upload["UploadId"]
    done = []

    def add_bytes(data):
        got = s3.upload_part(Bucket=bucket, Key=target, UploadId=upload_id,
                             PartNumber=len(done) + 1, Body=bytes(data))
        done.append({"PartNumber": len(done) + 1, "ETag": got["ETag"]})

    try:
        pending = bytearray()
        for key, size in sources:
            if not size:
                continue
            if not pending and size >= min_part:
                got = s3.upload_part_copy(Bucket=bucket, Key=target, UploadId=upload_id,
                                          PartNumber=len(done) + 1,
                                          CopySource={"Bucket": bucket, "Key": key})
                done.append({"PartNumber": len(done) + 1,
                             "ETag": got["CopyPartResult"]["ETag"]})
                continue
            pending += _get(s3, bucket, key)
            if len(pending) >= min_part:
                add_bytes(pending)
                pending = bytearray()
        if pending:
            add_bytes(pending)
        s3.complete_multipart_upload(Bucket=bucket, Key=target, UploadId=upload_id,
                                     MultipartUpload={"Parts": done})
    except BaseException:
        s3.abort_multipart_upload(Bucket=bucket, Key=target, UploadId=upload_id)
        raise
    return total


def error_report(s3, bucket, keys, parts):
    """The job's error report (JSON Lines of ``{"line", "reason"}``, in
    input order) from the parts' reports."""
    offsets = line_offsets(parts)
    lines = []
    for number in sorted(parts, key=int):
        if not parts[number]["rows_failed"]:
            continue
        for text in _get(s3, bucket, keys.part_errors(int(number))).decode("utf-8").splitlines():
            failure = json.loads(text)
            failure["line"] += offsets[number]
            lines.append(json.dumps(failure, separators=(",", ":")) + "\n")
    body = "".join(lines).encode("utf-8")
    s3.put_object(Bucket=bucket, Key=keys.errors, Body=body,
                  ContentType="application/jsonlines")
    return len(lines)


def _get(s3, bucket, key):
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
