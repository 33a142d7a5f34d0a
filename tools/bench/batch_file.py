"""The input of the batch benchmark: a CSV of a requested size, written
chunk by chunk (never whole in memory) from a fixed seed, with the edges a
real file has: a header, bad rows of every kind the endpoint refuses, blank
and whitespace-only lines, blocks of CRLF line endings, and a last line
without a newline. What it wrote (line numbers of the bad rows and the
blank lines, rows, bytes) is returned; :mod:`tools.bench.batch_check` reads
the file back against the job's output with it.

Rows are laid out with numpy as fixed-width byte columns padded with NUL,
then the padding dropped, so a gigabyte takes seconds, not minutes.
"""
from dataclasses import dataclass, field

import numpy as np

from tools.fixtures.fixtures_families import CITIES, COLORS

CHUNK_ROWS = 1 << 17
# Bad rows: about one in this many (and every kind in the first chunk).
BAD_EVERY = 150_000
# Of each chunk, the rows from a twentieth to a quarter end in CRLF.
CRLF_BLOCK = (0.05, 0.25)
BLANKS = (b"", b"   ", b"\t ")

# Iris: the features of the bundled model, each over the range its card records.
IRIS_HEADER = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
IRIS_RANGES = [(4.3, 7.9), (2.0, 4.4), (1.1, 6.9), (0.1, 2.5)]
IRIS_BAD = {
    "not a number": b"5.1,abc,1.4,0.2",
    "too few values": b"1,2,3",
    "too many values": b"5.1,3.5,1.4,0.2,9.9",
    "not finite": b"1e999,3.0,1.4,0.2",
    "invalid UTF-8": b"5.1,\xff\xfe,1.4,0.2",
    "missing value": b",3.0,1.4,0.2",
}
# The DataFrame pipeline of tools.fixtures.fixtures_families.tabular_pipeline.
TABULAR_HEADER = ["color", "city", "age", "income"]
TABULAR_BAD = {
    "not a number": b"red,Paris,abc,50000.00",
    "too few values": b"red,Paris,40",
    "too many values": b"red,Paris,40,100.50,7",
    "not finite": b"blue,Oslo,40,1e999",
    "invalid UTF-8": b"green,Rome,\xff,100.50",
    "missing value": b"red,Lisbon,,100.50",
}


@dataclass
class Generated:
    path: str
    header: list
    bytes: int = 0
    lines: int = 0                          # lines in the file, the header included
    rows: int = 0                           # good rows (neither bad nor blank)
    bad: dict = field(default_factory=dict)  # line number -> kind
    blank: list = field(default_factory=list)
    crlf: int = 0                           # lines ending in CRLF

    def as_dict(self):
        return {"bytes": self.bytes, "lines": self.lines, "rows": self.rows,
                "bad_rows": len(self.bad), "blank_lines": len(self.blank),
                "crlf_lines": self.crlf, "final_newline": False}


def _digits(ints, width):
    """``ints`` (>= 0) as ASCII digits, right-aligned in ``width`` columns,
    leading zeros made padding (NUL) but the last digit kept."""
    out = np.empty((len(ints), width), np.uint8)
    x = ints.astype(np.int64)
    for j in range(width - 1, -1, -1):
        out[:, j] = 48 + x % 10
        x //= 10
    lead = np.ones(len(ints), bool)
    for j in range(width - 1):
        lead &= out[:, j] == 48
        out[lead, j] = 0
    return out


def _decimal(values, int_width, decimals, drop_last=None):
    """Non-negative ``values`` with ``decimals`` digits after the point;
    where ``drop_last``, one digit fewer."""
    scaled = np.round(values * 10 ** decimals).astype(np.int64)
    whole = _digits(scaled // 10 ** decimals, int_width)
    frac = _digits(scaled % 10 ** decimals + 10 ** decimals, decimals + 1)[:, 1:]
    frac = frac.copy()
    frac[frac == 0] = 48  # the fraction keeps its zeros
    if drop_last is not None:
        frac[drop_last, -1] = 0
    point = np.full((len(values), 1), ord("."), np.uint8)
    return np.hstack([whole, point, frac])


def _categories(rng, values, n):
    width = max(len(v) for v in values)
    table = np.zeros((len(values), width), np.uint8)
    for i, v in enumerate(values):
        table[i, :len(v)] = np.frombuffer(v.encode(), np.uint8)
    return table[rng.integers(0, len(values), n)]


def _iris_columns(rng, n):
    return [_decimal(rng.uniform(lo, hi, n), 1, 2, drop_last=rng.random(n) < 0.5)
            for lo, hi in IRIS_RANGES]


def _tabular_columns(rng, n):
    age = _digits(rng.integers(18, 90, n), 2)
    income = _decimal(np.clip(np.abs(rng.normal(50_000, 15_000, n)), 0, 999_999.99), 6, 2)
    return [_categories(rng, COLORS, n), _categories(rng, CITIES, n), age, income]


SHAPES = {"iris": (IRIS_HEADER, _iris_columns, IRIS_BAD),
          "dataframe": (TABULAR_HEADER, _tabular_columns, TABULAR_BAD)}
NUMERIC = {"iris": IRIS_HEADER, "dataframe": ["age", "income"]}


def _chunk(rng, columns, n):
    """``(data, line_ends, crlf)``: n rows as bytes, the offset just past
    each row's line end, and how many end in CRLF."""
    comma = np.full((n, 1), ord(","), np.uint8)
    parts = []
    for col in columns(rng, n):
        parts += [col, comma]
    eol = np.zeros((n, 2), np.uint8)
    eol[:, 1] = ord("\n")
    lo, hi = int(n * CRLF_BLOCK[0]), int(n * CRLF_BLOCK[1])
    eol[lo:hi, 0] = ord("\r")
    table = np.hstack(parts[:-1] + [eol])
    flat = table.ravel()
    data = flat[flat != 0].tobytes()
    ends = np.cumsum(np.count_nonzero(table, axis=1))
    return data, ends, hi - lo


def generate(path, size_bytes, shape="iris", seed=0):
    """Write about ``size_bytes`` of CSV to ``path``; a :class:`Generated`."""
    header, columns, bad_kinds = SHAPES[shape]
    rng = np.random.default_rng(seed)
    out = Generated(path=path, header=list(header))
    kinds = sorted(bad_kinds)
    with open(path, "wb") as f:
        head = (",".join(header) + "\n").encode()
        f.write(head)
        out.bytes, out.lines = len(head), 1
        first = True
        while out.bytes < size_bytes:
            data, ends, crlf = _chunk(rng, columns, CHUNK_ROWS)
            n = len(ends)
            room = size_bytes - out.bytes
            if ends[-1] > room:  # the last chunk: only the rows that reach the size
                n = int(np.searchsorted(ends, room)) + 1
                n = min(n, len(ends))
                lo, hi = int(CHUNK_ROWS * CRLF_BLOCK[0]), int(CHUNK_ROWS * CRLF_BLOCK[1])
                crlf = max(0, min(n, hi) - lo)
            # special lines inserted before these rows: every bad kind and a
            # blank line in the first chunk, then now and then
            if first:
                specials = [("bad", k) for k in kinds] + [("blank", b) for b in BLANKS]
            else:
                specials = [("bad", kinds[int(rng.integers(len(kinds)))])
                            for _ in range(rng.poisson(CHUNK_ROWS / BAD_EVERY))]
                if rng.random() < 0.3:
                    specials.append(("blank", BLANKS[int(rng.integers(len(BLANKS)))]))
            at = sorted(int(p) for p in rng.integers(0, n, len(specials)))
            pieces, prev = [], 0
            for j, ((what, value), row) in enumerate(zip(specials, at)):
                start = int(ends[row - 1]) if row else 0
                pieces += [data[prev:start], bad_kinds[value] if what == "bad" else value,
                           b"\n"]
                prev = start
                number = out.lines + row + j + 1  # the rows and specials before it, the header
                if what == "bad":
                    out.bad[number] = value
                else:
                    out.blank.append(number)
            stop = int(ends[n - 1])
            tail = data[prev:stop]
            last = out.bytes + sum(map(len, pieces)) + len(tail) >= size_bytes
            if last:  # the file ends in a row without a newline
                out.crlf -= tail.endswith(b"\r\n")
                tail = tail[:-2] if tail.endswith(b"\r\n") else tail[:-1]
            pieces.append(tail)
            body = b"".join(pieces)
            f.write(body)
            out.bytes += len(body)
            out.lines += n + len(specials)
            out.rows += n
            out.crlf += crlf
            first = False
            if last:
                break
    return out

