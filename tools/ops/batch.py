"""Submit a batch job, follow it, download the result.

    .venv/bin/python -m tools.ops.batch submit FILE|s3://BUCKET/KEY [--wait] [--download PATH]
        [--output csv|jsonl] [--probabilities] [--join] [--bucket B]
    .venv/bin/python -m tools.ops.batch status NAME [--bucket B]

A local file is uploaded under the stage's input prefix of ``BATCH_BUCKET``
(an ``s3://`` object is copied there), with the job's options as object
metadata; the bucket's notification starts the job. ``--wait`` follows the
job's manifest with a progress bar (parts done of total, rows), then
downloads the output and its error report beside ``--download`` (by
default ``NAME.out`` and ``NAME.errors.jsonl`` in the current directory).
The bucket and prefixes are the app's own settings (``BATCH_BUCKET``,
``BATCH_INPUT_PREFIX``, ``BATCH_OUTPUT_PREFIX``), read from the environment.
"""
import argparse
import json
import os
import posixpath
import sys
import time

from chalicelib.http.config import BatchConfig, ConfigError

BAR_WIDTH = 30


def _s3():
    import boto3
    return boto3.client("s3")


def submit(s3, config, source, output=None, probabilities=False, join=False):
    """Put ``source`` under the input prefix: ``(name, etag)`` of the job's input."""
    metadata = {"probabilities": str(bool(probabilities)).lower(), "join": str(bool(join)).lower()}
    if output:
        metadata["output"] = output
    if source.startswith("s3://"):
        bucket, _, key = source[5:].partition("/")
        name = posixpath.basename(key)
        head = s3.head_object(Bucket=bucket, Key=key)
        put = s3.copy_object(Bucket=config.bucket, Key=config.input_prefix + name,
                             CopySource={"Bucket": bucket, "Key": key}, Metadata=metadata,
                             MetadataDirective="REPLACE",
                             ContentType=head.get("ContentType") or "binary/octet-stream")
        return name, put["CopyObjectResult"]["ETag"]
    name = os.path.basename(source)
    key = config.input_prefix + name
    # A multipart upload above 8 MiB (S3 takes at most 5 GB in one PUT);
    # its notification, like a PUT's, starts the job.
    s3.upload_file(source, config.bucket, key, ExtraArgs={"Metadata": metadata})
    return name, s3.head_object(Bucket=config.bucket, Key=key)["ETag"]


def manifest_of(s3, config, name):
    from botocore.exceptions import ClientError
    try:
        got = s3.get_object(Bucket=config.bucket,
                            Key=config.output_prefix + name + ".manifest.json")
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise
    return json.loads(got["Body"].read())


def progress_line(manifest):
    total = manifest.get("parts_total") or 0
    done = manifest.get("parts_done") or 0
    filled = int(BAR_WIDTH * done / total) if total else 0
    return "[%s%s] %d/%d parts, %d rows scored, %d failed (%s)" % (
        "#" * filled, "." * (BAR_WIDTH - filled), done, total, manifest.get("rows_scored", 0),
        manifest.get("rows_failed", 0), manifest["status"])


def wait(s3, config, name, etag, out=None, interval=2.0, timeout=3600.0):
    """The job's final manifest (complete or failed), following its progress."""
    out = out or sys.stderr
    deadline = time.monotonic() + timeout
    shown = None
    while True:
        manifest = manifest_of(s3, config, name)
        # the manifest of this upload, not of an earlier job on the same name
        if manifest and manifest.get("input_etag", etag) == etag:
            line = progress_line(manifest)
            if line != shown:
                out.write("\r" + line)
                out.flush()
                shown = line
            if manifest["status"] != "running":
                out.write("\n")
                return manifest
        if time.monotonic() > deadline:
            raise TimeoutError("job on %s not finished after %.0f s" % (name, timeout))
        time.sleep(interval)


def download(s3, config, manifest, target):
    """Output and error report to ``target`` and ``target`` minus ``.out``
    plus ``.errors.jsonl``."""
    paths = []
    for uri, path in ((manifest["output"], target),
                      (manifest["errors"], target[:-4] + ".errors.jsonl"
                       if target.endswith(".out") else target + ".errors.jsonl")):
        bucket, _, key = uri[5:].partition("/")
        s3.download_file(bucket, key, path)
        paths.append(path)
    return paths


def main(argv=None, s3=None):
    parser = argparse.ArgumentParser(prog="python -m tools.ops.batch", description=__doc__.split(
        "\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("submit", help="start a job on a local file or an s3:// object")
    p.add_argument("source")
    p.add_argument("--output", choices=("csv", "jsonl"))
    p.add_argument("--probabilities", action="store_true")
    p.add_argument("--join", action="store_true", help="each output row joined to its input row")
    p.add_argument("--wait", action="store_true")
    p.add_argument("--download", help="where the output goes (with --wait)")
    p.add_argument("--interval", type=float, default=2.0)
    p.add_argument("--timeout", type=float, default=3600.0)
    p.add_argument("--bucket")
    s = sub.add_parser("status", help="print a job's manifest")
    s.add_argument("name", help="the input's name (its key under the input prefix)")
    s.add_argument("--bucket")
    args = parser.parse_args(argv)
    env = dict(os.environ)
    if args.bucket:
        env["BATCH_BUCKET"] = args.bucket
    try:
        config = BatchConfig.from_env(env)
    except ConfigError as exc:
        parser.error(str(exc))
    if not config.bucket:
        parser.error("no bucket: set BATCH_BUCKET or pass --bucket")
    s3 = s3 or _s3()
    if args.command == "status":
        manifest = manifest_of(s3, config, args.name)
        if manifest is None:
            print("no job on %s" % args.name, file=sys.stderr)
            return 1
        print(json.dumps(manifest, indent=1, sort_keys=True))
        return 0
    name, etag = submit(s3, config, args.source, args.output, args.probabilities, args.join)
    print("submitted s3://%s/%s%s" % (config.bucket, config.input_prefix, name), file=sys.stderr)
    if not args.wait:
        return 0
    manifest = wait(s3, config, name, etag, interval=args.interval, timeout=args.timeout)
    if manifest["status"] != "complete":
        print("job failed: %s" % manifest.get("reason"), file=sys.stderr)
        return 1
    for path in download(s3, config, manifest, args.download or name + ".out"):
        print(path)
    print("%d rows in, %d scored, %d failed" % (manifest["rows_in"], manifest["rows_scored"],
                                                  manifest["rows_failed"]), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
