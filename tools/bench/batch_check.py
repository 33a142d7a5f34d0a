"""A batch job's joined CSV output read back against its input, streaming
(a gigabyte is never held whole): every good input row is in the output
exactly once and in input order, every bad row is in the error report with
its line number and nothing else is, blank lines are in neither, the
manifest's counts agree, and a sample of output rows is picked out to be
scored again through ``POST /model``.

The check is a digest over two streams: the input with its header, bad and
blank lines dropped and CRLF made LF, and the output with its header and
each line's last field (the prediction) dropped. With join, each output
line is its input line as read, so the two are equal exactly when nothing
was lost, duplicated or reordered.
"""
import bisect
import hashlib
import re

import numpy as np

BLOCK = 16 * 1024 * 1024
_LAST_FIELD = re.compile(rb",[^,\n]*\n")


def line_blocks(read, block=BLOCK):
    """Blocks of whole lines from ``read(n)``; a last line without a
    newline is given one."""
    carry = b""
    while True:
        data = read(block)
        if not data:
            break
        data = carry + data
        cut = data.rfind(b"\n") + 1
        carry = data[cut:]
        if cut:
            yield data[:cut]
    if carry:
        yield carry + b"\n"


def expected_rows(read, skip):
    """The input's rows as a joined output repeats them: the header (line 1)
    and the lines numbered in ``skip`` dropped, CRLF made LF."""
    skip = set(skip) | {1}
    ordered = sorted(skip)
    line = 1
    for block in line_blocks(read):
        n = block.count(b"\n")
        i = bisect.bisect_left(ordered, line)
        if i < len(ordered) and ordered[i] < line + n:
            lines = block.split(b"\n")[:-1]
            block = b"".join(text + b"\n" for k, text in enumerate(lines)
                             if line + k not in skip)
        yield block.replace(b"\r\n", b"\n")
        line += n


class Output:
    """What :func:`read_output` found: the header line, the row count, the
    digest of the rows without their predictions, and the sampled lines
    ``{output row index: line}``."""

    def __init__(self):
        self.header, self.rows, self.digest, self.samples = None, 0, hashlib.sha256(), {}


def read_output(read, sample_at=()):
    sample_at = sorted(sample_at)
    out = Output()
    for block in line_blocks(read):
        if out.header is None:
            cut = block.index(b"\n") + 1
            out.header, block = block[:cut - 1], block[cut:]
        n = block.count(b"\n")
        lo, hi = bisect.bisect_left(sample_at, out.rows), bisect.bisect_left(sample_at,
                                                                             out.rows + n)
        if hi > lo:
            lines = block.split(b"\n")
            for index in sample_at[lo:hi]:
                out.samples[index] = lines[index - out.rows]
        out.digest.update(_LAST_FIELD.sub(b"\n", block))
        out.rows += n
    return out


def digest_of(blocks):
    digest = hashlib.sha256()
    for block in blocks:
        digest.update(block)
    return digest


def sample_indices(rows, n, seed=0):
    """About ``n`` output row indices spread over ``rows``: one drawn at
    random from each of n equal stretches."""
    if rows <= n:
        return list(range(rows))
    rng = np.random.default_rng(seed)
    edges = np.linspace(0, rows, n + 1).astype(np.int64)
    return sorted({int(rng.integers(lo, hi)) for lo, hi in zip(edges[:-1], edges[1:]) if hi > lo})


def check(generated, open_input, output, errors, manifest):
    """Problems found (empty: the job is complete and exact). ``output``: a
    :class:`Output`; ``errors``: the error report's records."""
    problems = []
    with open_input() as f:
        want = digest_of(expected_rows(f.read, set(generated.bad) | set(generated.blank)))
    if output.header != (",".join(generated.header) + ",prediction").encode():
        problems.append("output header is %r" % output.header[:200])
    if output.rows != generated.rows:
        problems.append("output has %d rows, the input %d good ones" % (output.rows,
                                                                        generated.rows))
    if output.digest.hexdigest() != want.hexdigest():
        problems.append("the output's rows are not the input's good rows, once each, in order")
    lines = [e.get("line") for e in errors]
    if lines != sorted(generated.bad):
        missing = sorted(set(generated.bad) - set(lines))[:10]
        extra = sorted(set(lines) - set(generated.bad))[:10]
        problems.append("error report: %d lines, %d bad rows (not reported: %s; not bad: %s; "
                        "in order: %s)" % (len(lines), len(generated.bad), missing, extra,
                                           lines == sorted(lines)))
    if not all(isinstance(e.get("reason"), str) and e["reason"] for e in errors):
        problems.append("an error report record without a reason")
    counts = (manifest.get("status"), manifest.get("rows_in"), manifest.get("rows_scored"),
              manifest.get("rows_failed"), manifest.get("parts_done"))
    expected = ("complete", generated.rows + len(generated.bad), generated.rows,
                len(generated.bad), manifest.get("parts_total"))
    if counts != expected:
        problems.append("manifest (status, rows in, scored, failed, parts done) %s, expected %s"
                        % (counts, expected))
    return problems
