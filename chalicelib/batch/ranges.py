"""Line-aligned byte ranges of an S3 object.

The splitter cuts an object of ``size`` bytes into ranges of equal size
without reading it: a range owns every line that *starts* inside it (at
offset 0, or just after a ``\\n``). Its worker reads one byte before its
start to know whether a line starts there, reads on past its end until the
last line it owns ends, and counts the ``\\n`` inside the range, so that the
absolute line numbers can be worked out when the parts are assembled. A
line longer than a range is owned by the range it starts in; the ranges it
covers own nothing.
"""
import math

# What a worker reads past its range at first: most lines end well within it.
READ_AHEAD = 64 * 1024
# S3 completes a multipart upload of at most this many parts.
MAX_PARTS = 10_000


def plan(size, range_bytes):
    """``[(start, end), ...]``: at least one range (an empty object has one,
    empty), at most :data:`MAX_PARTS`."""
    range_bytes = max(range_bytes, math.ceil(size / MAX_PARTS), 1)
    count = max(1, math.ceil(size / range_bytes))
    return [(i * range_bytes, min((i + 1) * range_bytes, size)) for i in range(count)]


class Owned:
    """The bytes of the lines a range owns (``data``, starting at byte
    ``first`` of the object), how many lines of the range precede the first
    owned one (``lines_before``: 0 or 1), and the ``\\n`` in the range."""
    __slots__ = ("data", "first", "lines_before", "newlines")

    def __init__(self, data, first, lines_before, newlines):
        self.data, self.first = data, first
        self.lines_before, self.newlines = lines_before, newlines


def read_owned(get, size, start, end):
    """The lines the range ``[start, end)`` owns. ``get(first, last)``
    returns the object's bytes ``first..last`` inclusive (an HTTP range)."""
    if start >= end:
        return Owned(b"", start, 0, 0)
    lo = max(start - 1, 0)
    hi = min(end + READ_AHEAD, size)
    buf = get(lo, hi - 1)
    newlines = buf.count(b"\n", start - lo, end - lo)
    if start == 0:
        first = 0
    else:
        # byte start-1 onwards: the first line start at or after start
        i = buf.find(b"\n", 0, end - lo)
        if i == -1:
            return Owned(b"", end, 0, newlines)
        first = lo + i + 1
    if first >= end:
        return Owned(b"", end, 0, newlines)
    searched = end - 1 - lo
    j = buf.find(b"\n", searched)
    while j == -1 and hi < size:  # the last owned line goes on past what was read
        searched = len(buf)
        step = max(READ_AHEAD, len(buf))
        more = get(hi, min(hi + step, size) - 1)
        buf += more
        hi += len(more)
        j = buf.find(b"\n", searched)
    stop = lo + j + 1 if j != -1 else size
    lines_before = buf.count(b"\n", start - lo, first - lo) if first > start else 0
    return Owned(bytes(buf[first - lo:stop - lo]), first, lines_before, newlines)


def first_line(get, size, limit=1024 * 1024):
    """``(offset, bytes)`` of the object's first line that holds more than
    whitespace (the CSV header rule skips blank lines), or ``(-1, b"")``;
    ValueError if no line ends within ``limit`` bytes."""
    offset, buf = 0, b""
    while offset < size:
        end = buf.find(b"\n")
        while end == -1 and offset + len(buf) < size:
            if len(buf) >= limit:
                raise ValueError("the first line is longer than %d bytes" % limit)
            start = offset + len(buf)
            buf += get(start, min(start + READ_AHEAD, size) - 1)
            end = buf.find(b"\n")
        line = buf if end == -1 else buf[:end + 1]
        if line.strip():
            return offset, line
        offset += len(line)
        buf = buf[len(line):]
    return -1, b""
