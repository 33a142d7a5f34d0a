"""A model artifact named by URI in the card (``"artifact": "s3://bucket/key"``).

A model too large for the deployment package stays in S3; the package ships
only its card, which still holds the artifact's sha256. :func:`fetch`
downloads the object once per execution environment (Lambda's init phase)
into ``MODEL_CACHE_DIR`` (default ``/tmp``, 512 MB unless the function's
ephemeral storage is raised), hashing it while it streams, and keeps it only
if the hash equals the card's: nothing is unpickled before that check.

An artifact already in the cache under its sha256 is not downloaded again
(a warm environment re-initialising, or the build, which fetches the
artifact itself and traces the app against that copy). boto3 is imported
only to download: the Lambda Python runtime provides it, and the package
does not ship it.

Every failure (no such object, access denied, no network, a wrong sha256,
no room in ``/tmp``) raises :class:`~chalicelib.http.errors.ModelLoadError`,
which the app turns into a 503 saying why; it never crashes the init.
"""
import hashlib
import logging
import os
import re
import tempfile
import time

from chalicelib.http.config import MODEL_CACHE_DIR
from chalicelib.http.errors import ModelLoadError
from chalicelib.schema.card import ARTIFACT_FILE, is_remote, parse_s3_uri, sha256_of

log = logging.getLogger(__name__)

CACHE_DIR_ENV = MODEL_CACHE_DIR.name
DEFAULT_CACHE_DIR = MODEL_CACHE_DIR.default
_CHUNK = 1 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}\Z")


def object_arn(uri):
    """The ARN of the object ``uri`` names (what the function may read), in
    the partition of the function's region (aws-cn, aws-us-gov or aws)."""
    bucket, key = parse_s3_uri(uri)
    region = (os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "").lower()
    partition = "aws-cn" if region.startswith("cn-") else \
        "aws-us-gov" if region.startswith("us-gov-") else "aws"
    return "arn:%s:s3:::%s/%s" % (partition, bucket, key)


def cache_dir():
    return MODEL_CACHE_DIR.get()


def cached_path(sha256, directory=None):
    return os.path.join(directory or cache_dir(), "model-%s.joblib" % sha256)


def _sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(uri, sha256, directory=None):
    """The local path of the artifact ``uri``, verified against ``sha256``."""
    try:
        bucket, key = parse_s3_uri(uri)
    except ValueError as exc:
        raise ModelLoadError(str(exc)) from None
    if not (isinstance(sha256, str) and _SHA256.match(sha256)):
        raise ModelLoadError("the card's sha256 is not 64 hex digits")
    directory = directory or cache_dir()
    path = cached_path(sha256, directory)
    if os.path.isfile(path) and _sha256_of(path) == sha256:
        log.info("model artifact %s: using the verified copy %s", uri, path)
        return path
    started = time.perf_counter()
    size = _download(bucket, key, uri, sha256, path)
    seconds = time.perf_counter() - started
    log.info("model artifact %s: %.1f MiB downloaded and verified in %.2fs",
             uri, size / (1 << 20), seconds)
    return path


def _download(bucket, key, uri, sha256, path):
    try:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        raise ModelLoadError(
            "the artifact is in S3 but boto3 is not importable (the Lambda runtime provides "
            "it; elsewhere install boto3)",
            public="the model artifact is in S3 and this runtime cannot read S3") from None
    directory = os.path.dirname(path)
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".download-")
    except OSError as exc:
        raise ModelLoadError("cannot write the artifact to %s: %s" % (directory, exc.strerror),
                             public="no room to download the model artifact",
                             retryable=True) from None
    digest = hashlib.sha256()
    size = 0
    try:
        client = boto3.client("s3", config=Config(retries={"max_attempts": 3,
                                                            "mode": "standard"}))
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
        with os.fdopen(fd, "wb") as out:
            fd = None
            for chunk in body.iter_chunks(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
    except ClientError as exc:
        _remove(tmp)
        raise _client_error(exc, uri) from None
    except (BotoCoreError, OSError) as exc:
        _remove(tmp)
        raise ModelLoadError("model artifact %s cannot be downloaded: %s" % (uri, exc),
                             public="the model artifact cannot be downloaded from S3 (%s)"
                             % type(exc).__name__, retryable=True) from None
    finally:
        if fd is not None:
            os.close(fd)
    actual = digest.hexdigest()
    if actual != sha256:
        _remove(tmp)
        raise ModelLoadError("model artifact %s has sha256 %s but the card says %s"
                             % (uri, actual, sha256),
                             public="the model artifact in S3 does not match the card's "
                             "sha256; republish the model")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return size


def _client_error(exc, uri):
    """The ModelLoadError for an S3 error answer; all are retryable: an
    object not uploaded yet, a policy still propagating, throttling and S3's
    own errors can each pass without a new instance."""
    code = str(exc.response.get("Error", {}).get("Code", "")) or "error"
    if code in ("NoSuchKey", "404", "NoSuchBucket", "NotFound"):
        return ModelLoadError("model artifact %s does not exist (%s)" % (uri, code),
                              public="the model artifact does not exist in S3 (%s); "
                              "republish the model" % code, retryable=True)
    if code in ("AccessDenied", "403", "AllAccessDisabled"):
        # Without s3:ListBucket on the bucket, S3 also answers 403 (not 404)
        # for an object that does not exist.
        return ModelLoadError(
            "model artifact %s: access denied; the function's role needs s3:GetObject on "
            "%s (python -m tools.ops.model_policy); S3 answers the same for a missing object "
            "when the role may not list the bucket" % (uri, object_arn(uri)),
            public="the function may not read the model artifact in S3, or it does not "
            "exist (AccessDenied)", retryable=True)
    return ModelLoadError("model artifact %s cannot be downloaded: %s" % (uri, exc),
                          public="the model artifact cannot be downloaded from S3 (%s)" % code,
                          retryable=True)


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


def artifact_path(model_dir, card):
    """The local path of the card's artifact, its sha256 checked: the file
    beside the card, or the object the card names by URI (``s3://``),
    downloaded and verified by :func:`fetch`."""
    named = card.raw.get("artifact", ARTIFACT_FILE)
    if is_remote(named):
        return fetch(named, card.sha256)
    artifact = os.path.join(model_dir, ARTIFACT_FILE)
    if not os.path.isfile(artifact):
        raise ModelLoadError("no model artifact (%s) in the model directory" % ARTIFACT_FILE)
    try:
        actual = sha256_of(artifact)
    except OSError as exc:
        raise ModelLoadError("model artifact %s cannot be read: %s"
                             % (ARTIFACT_FILE, exc.strerror)) from None
    if actual != card.sha256:
        raise ModelLoadError("artifact sha256 %s does not match the card's %s"
                             % (actual, card.sha256))
    return artifact
