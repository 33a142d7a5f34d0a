"""A range's rows scored through the endpoint's own parsers and model.

Each non-blank line is a row: CSV under the file's header (the header rule
of ``POST /model``), or one JSON value per line (an object keyed by feature,
or a list in feature order, as ``instances`` takes them). Rows go to
:func:`chalicelib.schema.parsing.parse_csv` / ``parse_payload`` and
:meth:`ServedModel.infer` many at a time; when a batch fails, it is halved
until each bad row stands alone and its reason is known, so a bad row costs
the others nothing and is reported, never dropped. Only a model that cannot
serve at all (503) fails the range.
"""
import csv
import io
import json

import numpy as np

from chalicelib.http.errors import Line, ModelUnavailable, ServiceError
from chalicelib.schema.parsing import decode_json, parse_csv, parse_payload
from chalicelib.batch.layout import CSV

class Row:
    __slots__ = ("line", "text", "value")

    def __init__(self, line, text, value=None):
        self.line = line    # line number within the part (made absolute on assembly)
        self.text = text    # the line as read, without its line ending
        self.value = value  # a JSON line's decoded value


class Scored:
    """The rows that scored, in input order, with their predictions (and
    probabilities), and the rows that failed as ``(line, reason)``."""

    def __init__(self):
        self.rows, self.predictions, self.probabilities, self.failed = [], [], [], []


def split_rows(data, lines_before, skip_offset=-1, first_offset=0):
    """The rows of an owned range: ``(rows, failed)``. A line's number is
    counted from the range start; ``\\r\\n`` and a last line without
    ``\\n`` are read like any line; blank lines are no rows. The line at
    byte ``skip_offset`` (the header) is skipped."""
    rows, failed = [], []
    for some, bad in row_chunks(data, lines_before, skip_offset, first_offset, len(data) + 1):
        rows += some
        failed += bad
    return rows, failed


def row_chunks(data, lines_before, skip_offset=-1, first_offset=0, lines_per_chunk=10000):
    """:func:`split_rows` ``lines_per_chunk`` lines at a time: ``(rows,
    failed)`` per chunk, so that a range's rows never all stand as Python
    objects at once (a 16 MB range is about a million rows)."""
    offset, k, n = first_offset, 0, len(data)
    start = 0
    while start < n:
        rows, failed = [], []
        for _ in range(lines_per_chunk):
            if start >= n:
                break
            stop = data.find(b"\n", start)
            stop = n if stop == -1 else stop
            raw = data[start:stop]
            start = stop + 1
            at = offset
            offset += len(raw) + 1
            line = lines_before + k
            k += 1
            if at == skip_offset:
                continue
            _add_row(raw, at, line, rows, failed)
        yield rows, failed


def _add_row(raw, at, line, rows, failed):
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    if at == 0 and raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        failed.append((line, "not valid UTF-8 (byte %d of the line)" % exc.start))
        return
    if text.strip():
        rows.append(Row(line, text))


class Scorer:
    """Scores rows of one input format with one served model."""

    def __init__(self, model, input_format, header, probabilities, rows_per_call):
        self.model = model
        self.input_format = input_format
        self.probabilities = probabilities
        self.rows_per_call = rows_per_call
        names = header or list(model.schema.feature_names)
        # Every CSV batch goes to the parser under a header (the file's, or
        # the feature names in order), so no data line is ever taken for one.
        self._csv_header = _csv_line(names)

    def score(self, rows):
        out = Scored()
        if self.input_format != CSV:
            rows = self._decode(rows, out)
        for i in range(0, len(rows), self.rows_per_call):
            self._score(rows[i:i + self.rows_per_call], out)
        out.failed.sort()
        return out

    def _decode(self, rows, out):
        decoded = []
        for row in rows:
            try:
                row.value = decode_json(row.text, 1)
            except ServiceError as exc:
                out.failed.append((row.line, _reason(exc)))
                continue
            decoded.append(row)
        return decoded

    def _parse(self, rows):
        schema = self.model.schema
        if self.input_format == CSV:
            X = parse_csv(self._csv_header + "\n".join(r.text for r in rows), schema, len(rows))
        else:
            X = parse_payload({"instances": [r.value for r in rows]}, schema, len(rows)).X
        if len(X) != len(rows):
            # a quoted field ran over a line end: one record from two lines
            raise ServiceError("malformed CSV: a quoted field does not end on its line")
        return X

    def _score(self, rows, out):
        if not rows:
            return
        try:
            X = self._parse(rows)
            predictions, proba = self.model.infer(X, self.probabilities)
        except ModelUnavailable:
            raise
        except ServiceError as exc:
            if len(rows) == 1:
                out.failed.append((rows[0].line, _reason(exc)))
                return
            half = len(rows) // 2
            self._score(rows[:half], out)
            self._score(rows[half:], out)
            return
        out.rows.extend(rows)
        out.predictions.extend(_plain(predictions))
        if self.probabilities:
            out.probabilities.extend(_plain(proba))


def _plain(values):
    if isinstance(values, list):  # multi-output probabilities of unequal widths
        return [[p[i].tolist() for p in values] for i in range(len(values[0]))]
    return np.asarray(values).tolist()


def _reason(exc):
    """The parser's message with the row as its place: the line number
    (in the file, not in the parsed chunk) is reported beside it."""
    loc = exc.loc
    if loc[:1] == ("instances",):
        loc = loc[2:]
    elif loc and isinstance(loc[0], Line):
        loc = loc[1:]
    return exc.relocated(("row",) + loc).message if loc else exc.detail


def _csv_line(fields):
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(fields)
    return buffer.getvalue()


class Writer:
    """A part's output rows: CSV (the header only in the first part) or
    JSON Lines, each row its prediction (and probabilities), joined to its
    input row on request."""

    def __init__(self, output_format, input_format, header, classes, probabilities, join,
                 feature_names):
        self.output_format = output_format
        self.input_format = input_format
        self.columns = header or list(feature_names)
        self.classes = classes
        self.probabilities = probabilities
        self.join = join

    def header(self):
        if self.output_format != CSV:
            return ""
        names = (list(self.columns) if self.join else []) + ["prediction"]
        if self.probabilities:
            names += ["probability_%s" % c for c in self._class_names()]
        return _csv_line(names)

    def _class_names(self):
        flat = self.classes is not None and all(not isinstance(c, list) for c in self.classes)
        return [str(c) for c in self.classes] if flat else ["all"]

    def write(self, scored):
        if self.output_format == CSV:
            return self._csv(scored)
        return self._jsonl(scored)

    def _csv(self, scored):
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        flat_proba = self._class_names() != ["all"]
        for k, row in enumerate(scored.rows):
            fields = [_csv_value(scored.predictions[k])]
            if self.probabilities:
                p = scored.probabilities[k]
                fields += [_csv_value(v) for v in p] if flat_proba else [json.dumps(p)]
            if self.join:
                if self.input_format == CSV:
                    # the input line exactly as read, then the new fields
                    buffer.write(row.text + ",")
                else:
                    fields = [_csv_value(v) for v in self._input_fields(row.value)] + fields
            writer.writerow(fields)
        return buffer.getvalue()

    def _input_fields(self, value):
        if isinstance(value, dict):
            return [value.get(name) for name in self.columns]
        return value if isinstance(value, list) else [value]

    def _jsonl(self, scored):
        lines = []
        flat_proba = self._class_names() != ["all"]
        for k, row in enumerate(scored.rows):
            record = {}
            if self.join:
                record["input"] = row.value if self.input_format != CSV else \
                    dict(zip(self.columns, next(csv.reader([row.text]))))
            record["prediction"] = scored.predictions[k]
            if self.probabilities:
                p = scored.probabilities[k]
                record["probabilities"] = dict(zip(self._class_names(), p)) if flat_proba else p
            lines.append(json.dumps(record, separators=(",", ":")) + "\n")
        return "".join(lines)


def _csv_value(value):
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return value
