"""Worst-case request bodies against a normal body of the same type, at the
size limit: ``.venv/bin/python -m tools.harden.hostile_bodies`` (``make harden``
prints its table).

Each body is parsed by the app's own parser (``parse_request`` with the
bundled model's schema) in a fresh child process, the hostile ones under
the app's default limit of 10,000 rows, the normal ones (whose 6 MiB hold
more rows than that) parsed to their end, as what a legitimate full-size
body costs:
the time is the best of three parses, the memory the growth of the peak RSS
over the process after loading the body. Ratios are against the normal body
of the same media type measured in the same run (target: at most 2x time
and 2x memory, the hostile-input issue's bar).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LIMIT = 6 * 1024 * 1024 - 1024
MAX_ROWS = 10_000  # the app's default
TARGET = 2.0

_CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from chalicelib.schema.card import ModelCard
from chalicelib.http.errors import ServiceError
from chalicelib.schema.parsing import parse_request
schema = ModelCard.read(sys.argv[1] + "/model/iris").schema
body = open(sys.argv[2], "rb").read()
content_type = sys.argv[3]
MAX_ROWS = int(sys.argv[4])
parse_request(b'{"instances": [[1, 2, 3, 4]]}', "application/json", schema, MAX_ROWS)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
best, outcome = None, None
for _ in range(3):
    started = time.perf_counter()
    try:
        parse_request(body, content_type, schema, MAX_ROWS)
        outcome = "200"
    except ServiceError as exc:
        outcome = "%d" % exc.status
    elapsed = time.perf_counter() - started
    best = elapsed if best is None else min(best, elapsed)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": best, "rss_growth_kib": after - before, "outcome": outcome}))
"""


def _fill(unit, limit=LIMIT, head="", tail=""):
    count = (limit - len(head) - len(tail)) // len(unit)
    return head + unit * count + tail


def bodies():
    """(media type, name, body, is the normal one)."""
    row = "[5.1,3.5,1.4,0.2]"
    record = '{"sepal_length":5.1,"sepal_width":3.5,"petal_length":1.4,"petal_width":0.2}'
    return [
        ("text/csv", "normal: rows of 4 numbers", _fill("5.1,3.5,1.4,0.2\n"), True),
        ("text/csv", "one run of digits then a letter (ReDoS shape)", _fill("1", tail="x\n"), False),
        ("text/csv", "one line of empty fields", _fill(",", tail="\n"), False),
        ("text/csv", "lines of digit runs", _fill("1" * 1000 + "x\n"), False),
        ("text/csv", "one huge quoted field", _fill("a", head='"', tail='"\n'), False),
        ("application/json", "normal: instances as lists",
         _fill(row + ",", head='{"instances":[', tail=row + "]}"), True),
        ("application/json", "nested lists", _fill("[", head='{"instances":'), False),
        ("application/json", "empty objects",
         _fill("{},", head='{"instances":[', tail="{}]}"), False),
        ("application/json", "empty lists", _fill("[],", head='{"instances":[', tail="[]]}"), False),
        ("application/json", "normal records (not the baseline)",
         _fill(record + ",", head='{"dataframe_records":[', tail=record + "]}"), False),
        ("application/json", "records of empty objects",
         _fill("{},", head='{"dataframe_records":[', tail="{}]}"), False),
        ("application/json", "tiny records with strings",
         _fill('{"a":1},', head='{"dataframe_records":[', tail='{"a":1}]}'), False),
        ("application/json", "one long string", _fill("a", head='{"instances":[["', tail='"]]}'),
         False),
    ]


def measure():
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for media_type, name, body, normal in bodies():
            path = os.path.join(tmp, "body")
            with open(path, "w") as f:
                f.write(body)
            # A normal 6 MiB body of this model's rows holds more than the
            # 10,000 rows a request may have: it is measured parsed to its
            # end (what a legitimate full-size body costs); the hostile ones
            # under the app's real limit.
            max_rows = 10 ** 9 if normal else MAX_ROWS
            proc = subprocess.run([sys.executable, "-c", _CHILD, PROJECT_DIR, path, media_type,
                                   str(max_rows)],
                                  capture_output=True, text=True, timeout=600)
            if proc.returncode != 0:
                raise RuntimeError("%s: %s" % (name, proc.stderr[-500:]))
            figures = json.loads(proc.stdout)
            rows.append(dict(figures, media_type=media_type, name=name, normal=normal,
                             size=len(body)))
    normals = {}
    for row in rows:
        if row["normal"]:
            normals.setdefault(row["media_type"], row)
    for row in rows:
        base = normals[row["media_type"]]
        row["time_ratio"] = row["seconds"] / base["seconds"]
        row["memory_ratio"] = max(row["rss_growth_kib"], 1) / max(base["rss_growth_kib"], 1)
        row["held"] = row["time_ratio"] <= TARGET and row["memory_ratio"] <= TARGET
    return rows


def table(rows):
    lines = ["%-17s %-48s %8s %8s %6s %9s %6s %s" % (
        "type", "body (~6 MiB)", "status", "seconds", "x time", "RSS MiB", "x mem", "")]
    for r in rows:
        lines.append("%-17s %-48s %8s %8.3f %6.2f %9.1f %6.2f %s" % (
            r["media_type"], r["name"], r["outcome"], r["seconds"], r["time_ratio"],
            r["rss_growth_kib"] / 1024, r["memory_ratio"],
            "" if r["normal"] else ("ok" if r["held"] else "OVER 2x")))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tools.harden.hostile_bodies",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    rows = measure()
    print(table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0 if all(r["held"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
