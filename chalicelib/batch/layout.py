"""Where a batch job's objects live, what a job is asked for, and the range
task a worker receives.

An input ``<input prefix><name>`` gives ``<output prefix><name>.out`` (the
scored rows), ``<name>.errors.jsonl`` (the rows that failed, with their line
numbers and reasons) and ``<name>.manifest.json`` (the job's status), like
SageMaker Batch Transform's ``<key>.out``. A job's parts and its completion
marker live under ``<work prefix><job id>/``. The job id is a digest of the
object's identity in its S3 event (key, ETag, sequencer): a retried event is
the same job, a new upload of the same key is a new one.
"""
import hashlib
import json
import posixpath
from dataclasses import asdict, dataclass, fields

CSV = "csv"
JSONL = "jsonl"
FORMATS = (CSV, JSONL)
CONTENT_TYPES = {CSV: "text/csv", JSONL: "application/jsonlines"}
_FORMAT_OF_TYPE = {"text/csv": CSV, "application/jsonlines": JSONL, "application/x-jsonlines": JSONL,
                   "application/jsonl": JSONL, "application/x-ndjson": JSONL,
                   "application/ndjson": JSONL}
_FORMAT_OF_SUFFIX = {".csv": CSV, ".jsonl": JSONL, ".ndjson": JSONL, ".jsonlines": JSONL}
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no", "")


class JobRefused(ValueError):
    """The job cannot run as asked (unknown format, bad option, unusable
    header); the message is written to its manifest as the reason."""


def job_id(bucket, key, etag, sequencer):
    seen = "\n".join((bucket, key, etag or "", sequencer or ""))
    return hashlib.sha256(seen.encode("utf-8")).hexdigest()[:24]


@dataclass(frozen=True)
class JobKeys:
    output: str
    errors: str
    manifest: str
    work: str

    @classmethod
    def of(cls, config, key, job):
        name = key[len(config.input_prefix):] if key.startswith(config.input_prefix) \
            else posixpath.basename(key)
        out = config.output_prefix + name
        return cls(output=out + ".out", errors=out + ".errors.jsonl",
                   manifest=out + ".manifest.json", work="%s%s/" % (config.work_prefix, job))

    def part(self, number):
        return "%spart-%05d.out" % (self.work, number)

    def part_errors(self, number):
        return "%spart-%05d.errors.jsonl" % (self.work, number)

    @property
    def marker(self):
        return self.work + "assembly"


@dataclass(frozen=True)
class Options:
    """What the job asks for, read from the input object's content type,
    name and metadata (``x-amz-meta-output``: csv or jsonl, the input's by
    default; ``x-amz-meta-probabilities`` and ``x-amz-meta-join``: true or false)."""
    input_format: str
    output_format: str
    probabilities: bool
    join: bool

    @classmethod
    def of(cls, key, content_type, metadata):
        media = (content_type or "").split(";")[0].strip().lower()
        input_format = _FORMAT_OF_TYPE.get(media) or \
            _FORMAT_OF_SUFFIX.get(posixpath.splitext(key)[1].lower())
        if input_format is None:
            raise JobRefused("cannot tell the input format of %s: name it .csv or .jsonl, or "
                             "upload it as text/csv or application/jsonlines" % key)
        metadata = {k.lower(): v for k, v in (metadata or {}).items()}
        output_format = (metadata.get("output") or input_format).strip().lower()
        if output_format not in FORMATS:
            raise JobRefused("x-amz-meta-output must be csv or jsonl, got %r" % output_format)
        return cls(input_format, output_format, _flag(metadata, "probabilities"),
                   _flag(metadata, "join"))


def _flag(metadata, name):
    value = (metadata.get(name) or "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise JobRefused("x-amz-meta-%s must be true or false, got %r" % (name, value))


@dataclass(frozen=True)
class Task:
    """One range of one job: the bytes ``[start, end)`` of the input, whose
    worker scores every line that starts inside it."""
    job: str
    bucket: str
    key: str
    etag: str
    size: int
    part: int
    parts: int
    start: int
    end: int
    input_format: str
    output_format: str
    probabilities: bool
    join: bool
    header: object      # the CSV header's fields, or None
    header_at: int      # byte offset of the header line (-1: none)

    def to_json(self):
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text):
        """A task, or ValueError: a message that is not one is a poison task."""
        try:
            raw = json.loads(text)
        except (TypeError, ValueError):
            raise ValueError("a range task is a JSON object; got %.80r" % (text,)) from None
        names = {f.name for f in fields(cls)}
        if type(raw) is not dict or set(raw) != names:
            raise ValueError("a range task has exactly the keys %s" % ", ".join(sorted(names)))
        task = cls(**raw)
        if not (0 <= task.start <= task.end <= task.size and 1 <= task.part <= task.parts
                and task.input_format in FORMATS and task.output_format in FORMATS):
            raise ValueError("range task out of bounds: %s" % text[:200])
        return task
