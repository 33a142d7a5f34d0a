"""Every setting the app reads from its environment, declared once: its
name, its default, how its value is read and what it means. Modules read a
setting only through its declaration here (``MAX_ROWS.get(env)``), so one
rule decides what ``true`` means and what a bad value does.

:class:`Config` is what the request path needs, read once at init and
passed down (frozen). The settings that act before the app exists
(``LAZY_IMPORTS``, read by the import hook) or deep in the loader (the load
budgets, the trust switches) use the same declarations.

A stage sets these in ``.chalice/config.json``; Chalice sets them when it
imports the app to package or deploy it, so a wrong ``API_AUTH`` fails
``chalice package``/``deploy`` before anything ships.
"""
import os
from dataclasses import dataclass

from chalicelib.http.errors import ModelLoadError

AUTH_MODES = ("none", "api_key", "iam")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class ConfigError(ValueError):
    """A setting whose value cannot be used; the message names it."""


def _text(name, raw):
    return raw.strip() or None


def _flag(name, raw):
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE or value == "":
        return False
    raise ConfigError("%s must be true or false, got %r" % (name, raw))


def _positive_int(name, raw):
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise ConfigError("%s must be a positive integer, got %r" % (name, raw))
    return value


def _positive_number(name, raw):
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise ConfigError("%s must be a positive number, got %r" % (name, raw))
    return value


def _auth(name, raw):
    value = raw.strip().lower() or "none"
    if value not in AUTH_MODES:
        raise ConfigError("%s must be one of %s, got %r" % (name, ", ".join(AUTH_MODES), raw))
    return value


class Setting:
    """One environment variable: ``get(env)`` is its value, or ``default``
    when it is unset or empty; a value that cannot be read raises
    :class:`ConfigError` naming the variable."""

    def __init__(self, name, default, read, doc):
        self.name = name
        self.default = default
        self.read = read
        self.doc = doc

    def get(self, env=None):
        raw = (os.environ if env is None else env).get(self.name)
        if raw is None or raw.strip() == "":
            return self.default
        return self.read(self.name, raw)


# The project root locally, /var/task in the Lambda (chalicelib/http/ is two
# levels below it): a relative MODEL_DIR ("model/iris") names the same model
# in both, whatever the working directory.
APP_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _model_dir(name, raw):
    return os.path.join(APP_ROOT, raw.strip())


MODEL_DIR = Setting("MODEL_DIR", None, _model_dir,
                    "the model directory served, model/NAME (unset: the bundled model/iris)")
MODEL_RUNTIME = Setting("MODEL_RUNTIME", None, _text,
                        "scikit-learn or onnxruntime; unset: the card's runtime")
MAX_ROWS = Setting("MAX_ROWS", 10_000, _positive_int, "rows per request (413 above)")
# Lambda refuses synchronous invocations over 6 MB; refuse earlier and say so.
MAX_BODY_BYTES = Setting("MAX_BODY_BYTES", 6 * 1024 * 1024, _positive_int,
                         "bytes per request body (413 above)")
LOG_REQUESTS = Setting("LOG_REQUESTS", True, _flag,
                       "one JSON log line (and metrics record) per request")
API_AUTH = Setting("API_AUTH", "none", _auth, "who may call the prediction routes")
CORS_ALLOW_ORIGIN = Setting("CORS_ALLOW_ORIGIN", None, _text,
                            "the one browser origin allowed, if any")
METRICS_NAMESPACE = Setting("METRICS_NAMESPACE", "SklearnServerless", _text,
                            "the CloudWatch namespace of the metrics")
MODEL_CACHE_DIR = Setting("MODEL_CACHE_DIR", "/tmp", _text,
                          "where an s3:// artifact is downloaded and verified")
ALLOW_VERSION_SKEW = Setting("ALLOW_VERSION_SKEW", False, _flag,
                             "serve a model saved by another scikit-learn version")
TRUST_MODEL_PICKLE = Setting("TRUST_MODEL_PICKLE", False, _flag,
                             "unpickle with plain joblib.load")
MODEL_LOAD_MAX_MB = Setting("MODEL_LOAD_MAX_MB", None, _positive_number,
                            "MiB a load may decompress or allocate (unset: by artifact size)")
MODEL_LOAD_TIMEOUT_S = Setting("MODEL_LOAD_TIMEOUT_S", 20.0, _positive_number,
                               "seconds a load may take before it is a 503")
MODEL_LOAD_ISOLATED = Setting("MODEL_LOAD_ISOLATED", True, _flag,
                              "try the load first in a forked child under hard memory, CPU "
                              "and wall-clock limits")
PREDICT_DEADLINE_S = Setting("PREDICT_DEADLINE_S", 5.0, _positive_number,
                             "seconds an ONNX Runtime prediction may run before it is a 504")
LAZY_IMPORTS = Setting("LAZY_IMPORTS", True, _flag,
                       "off runs every module at import, ignoring the build's list")
BATCH_EVENT_SOURCES = ("off", "chalice", "template")


def _batch_events(name, raw):
    value = raw.strip().lower()
    if value not in BATCH_EVENT_SOURCES:
        raise ConfigError("%s must be one of %s, got %r"
                          % (name, ", ".join(BATCH_EVENT_SOURCES), raw))
    return value


def _prefix(name, raw):
    value = raw.strip().lstrip("/")
    if not value.endswith("/") or "*" in value or "?" in value:
        raise ConfigError("%s must be a key prefix ending in / without wildcards, got %r"
                          % (name, raw))
    return value


BATCH_EVENTS = Setting("BATCH_EVENTS", "off", _batch_events,
                       "how the batch splitter hears of new input objects")
BATCH_BUCKET = Setting("BATCH_BUCKET", None, _text, "the bucket of batch jobs")
BATCH_BUCKET_EXISTS = Setting("BATCH_BUCKET_EXISTS", False, _flag,
                              "the template uses BATCH_BUCKET as it is instead of creating it")
BATCH_INPUT_PREFIX = Setting("BATCH_INPUT_PREFIX", "batch/in/", _prefix,
                             "where an object put starts a batch job")
BATCH_OUTPUT_PREFIX = Setting("BATCH_OUTPUT_PREFIX", "batch/out/", _prefix,
                              "where a job's output, error report and manifest go")
BATCH_WORK_PREFIX = Setting("BATCH_WORK_PREFIX", "batch/work/", _prefix,
                            "where a job's parts and its completion marker go")
BATCH_QUEUE = Setting("BATCH_QUEUE", "sklearn-serverless-batch", _text,
                      "the SQS queue of range tasks")
BATCH_RANGE_MB = Setting("BATCH_RANGE_MB", 16.0, _positive_number,
                         "MiB of input per range task")
BATCH_ROWS_PER_CALL = Setting("BATCH_ROWS_PER_CALL", 5_000, _positive_int,
                              "rows per predict call in a worker")
BATCH_SQS_BATCH_SIZE = Setting("BATCH_SQS_BATCH_SIZE", 1, _positive_int,
                               "range tasks per worker invocation")
BATCH_MAX_CONCURRENCY = Setting("BATCH_MAX_CONCURRENCY", 10, _positive_int,
                                "concurrent worker invocations the queue may start")
BATCH_MAX_RECEIVE = Setting("BATCH_MAX_RECEIVE", 3, _positive_int,
                            "deliveries of a range task before it moves to the dead-letter queue")
BATCH_SWEEP_MINUTES = Setting("BATCH_SWEEP_MINUTES", 5, _positive_int,
                              "minutes between sweeps of the dead-letter queue")

#: Every setting, in the order the configuration table lists them.
SETTINGS = (MODEL_DIR, MODEL_RUNTIME, MAX_ROWS, MAX_BODY_BYTES, LOG_REQUESTS, API_AUTH,
            CORS_ALLOW_ORIGIN, METRICS_NAMESPACE, MODEL_CACHE_DIR, ALLOW_VERSION_SKEW,
            TRUST_MODEL_PICKLE, MODEL_LOAD_MAX_MB, MODEL_LOAD_TIMEOUT_S, MODEL_LOAD_ISOLATED,
            PREDICT_DEADLINE_S, LAZY_IMPORTS,
            BATCH_EVENTS, BATCH_BUCKET, BATCH_BUCKET_EXISTS, BATCH_INPUT_PREFIX,
            BATCH_OUTPUT_PREFIX, BATCH_WORK_PREFIX, BATCH_QUEUE, BATCH_RANGE_MB, BATCH_ROWS_PER_CALL,
            BATCH_SQS_BATCH_SIZE, BATCH_MAX_CONCURRENCY, BATCH_MAX_RECEIVE, BATCH_SWEEP_MINUTES)


def model_setting(setting, env=None):
    """A setting that a model load reads: a value that cannot be read
    refuses the model (a 503 naming the setting), never stops the app."""
    try:
        return setting.get(env)
    except ConfigError as exc:
        raise ModelLoadError(str(exc)) from None


@dataclass(frozen=True)
class Access:
    """How the stage exposes the endpoint: ``auth`` (none, api_key, iam)
    and the CORS origin (None: CORS off)."""
    auth: str
    cors_origin: object

    @classmethod
    def from_env(cls, env=None):
        """Raises ConfigError: a stage with a wrong auth must not deploy."""
        return cls(API_AUTH.get(env), CORS_ALLOW_ORIGIN.get(env))


@dataclass(frozen=True)
class Config:
    """What the request path reads, once per process. ``problem`` is the
    reason the model cannot be served when a setting was wrong (the other
    fields then hold their defaults, so the error can still be answered)."""
    model_dir: object
    model_runtime: object
    max_rows: int
    max_body_bytes: int
    log_requests: bool
    access: Access
    problem: object = None

    @classmethod
    def from_env(cls, env=None, bundled_model_dir=None):
        access = Access.from_env(env)
        try:
            return cls(model_dir=MODEL_DIR.get(env) or bundled_model_dir,
                       model_runtime=MODEL_RUNTIME.get(env), max_rows=MAX_ROWS.get(env),
                       max_body_bytes=MAX_BODY_BYTES.get(env),
                       log_requests=LOG_REQUESTS.get(env), access=access)
        except ConfigError as exc:
            return cls(model_dir=bundled_model_dir, model_runtime=None,
                       max_rows=MAX_ROWS.default, max_body_bytes=MAX_BODY_BYTES.default,
                       log_requests=True, access=access,
                       problem="configuration error: %s" % exc)


@dataclass(frozen=True)
class BatchConfig:
    """The batch transform's settings (``chalicelib/batch``): read where the
    app declares its event sources, so a wrong value fails ``chalice
    package``/``deploy`` like a wrong ``API_AUTH``."""
    events: str
    bucket: object
    input_prefix: str
    output_prefix: str
    work_prefix: str
    queue: str
    range_bytes: int
    rows_per_call: int
    sqs_batch_size: int
    max_concurrency: int
    max_receive: int = 3
    sweep_minutes: int = 5
    bucket_exists: bool = False

    @property
    def dead_letter_queue(self):
        """The task queue's dead-letter queue, named after it."""
        return self.queue + "-dlq"

    @classmethod
    def from_env(cls, env=None):
        events = BATCH_EVENTS.get(env)
        bucket = BATCH_BUCKET.get(env)
        if events == "chalice" and not bucket:
            raise ConfigError("BATCH_EVENTS=chalice needs BATCH_BUCKET (the bucket to watch)")
        if events == "template" and not bucket:
            # the template names the bucket it creates, and grants exactly it
            raise ConfigError("BATCH_EVENTS=template needs BATCH_BUCKET (the bucket the "
                              "template creates)")
        prefixes = (BATCH_INPUT_PREFIX.get(env), BATCH_OUTPUT_PREFIX.get(env),
                    BATCH_WORK_PREFIX.get(env))
        for i, a in enumerate(prefixes):
            for j, b in enumerate(prefixes):
                if i != j and a.startswith(b):
                    # an output written under the input prefix would start a job of its own
                    raise ConfigError("the batch prefixes must not contain one another: %r, %r"
                                      % (a, b))
        concurrency = BATCH_MAX_CONCURRENCY.get(env)
        if concurrency < 2:  # the SQS event source's floor
            raise ConfigError("BATCH_MAX_CONCURRENCY must be at least 2, got %d" % concurrency)
        return cls(events=events, bucket=bucket, input_prefix=prefixes[0],
                   output_prefix=prefixes[1], work_prefix=prefixes[2], queue=BATCH_QUEUE.get(env),
                   range_bytes=max(1, int(BATCH_RANGE_MB.get(env) * 1024 * 1024)),
                   rows_per_call=BATCH_ROWS_PER_CALL.get(env),
                   sqs_batch_size=BATCH_SQS_BATCH_SIZE.get(env), max_concurrency=concurrency,
                   max_receive=BATCH_MAX_RECEIVE.get(env),
                   sweep_minutes=BATCH_SWEEP_MINUTES.get(env),
                   bucket_exists=BATCH_BUCKET_EXISTS.get(env))
