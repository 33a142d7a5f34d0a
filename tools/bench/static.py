"""What ``tools.bench`` reads off a package rather than timing it side by
side: the per-module import time of its cold start (``-X importtime``), its
zipped size per top-level package and the room left for the model, and the
init estimated on Lambda from the measured single-core cold start."""
import os
import re
import subprocess
import zipfile

MiB = 1024 * 1024
ZIP_LIMIT = 50 * MiB       # Lambda: direct upload
FULL_CORE_MB = 1769        # Lambda gives one full vCPU at 1,769 MB
ESTIMATE_MB = (512, 1769)

_IMPORTTIME = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)\s*$")


# --------------------------------------------------------------------------
# -X importtime


def import_times(cmd, cwd, env):
    """Run ``cmd`` (an isolated cold start, ``-X importtime`` among its
    options); return [(module, self us, cumulative us, depth)]."""
    proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=300)
    if proc.returncode != 0:
        raise SystemExit("bench: the -X importtime run failed:\n" + proc.stderr[-3000:])
    rows = []
    for line in proc.stderr.splitlines():
        m = _IMPORTTIME.match(line)
        if m:
            rows.append((m.group(4), int(m.group(1)), int(m.group(2)), len(m.group(3)) // 2))
    return rows


def summarize_imports(rows, top=10):
    """Top modules by self and cumulative time, self time per top-level
    package, and the total (the cumulative of the outermost imports)."""
    by_package = {}
    for name, self_us, _, _ in rows:
        root = name.split(".")[0]
        by_package[root] = by_package.get(root, 0) + self_us
    total = sum(cum for _, _, cum, depth in rows if depth == 0)
    return {"modules": len(rows), "total_us": total,
            "top_self": [(n, s) for n, s, _, _ in sorted(rows, key=lambda r: -r[1])[:top]],
            "top_cumulative": [(n, c) for n, _, c, _ in sorted(rows, key=lambda r: -r[2])[:top]],
            "by_package": sorted(by_package.items(), key=lambda kv: -kv[1])}


# --------------------------------------------------------------------------
# Zipped size per top-level package


def top_level(filename, model_rel):
    """The top-level package a zip entry belongs to: ``numpy.libs`` (the
    vendored shared libraries) counts as numpy, a ``.dist-info`` as its
    distribution, the model directory as ``model``, a top-level file as
    itself (``app.py``)."""
    if model_rel and (filename + "/").startswith(model_rel.rstrip("/") + "/"):
        return "model"
    first = filename.split("/", 1)[0]
    if "/" not in filename:
        return first
    if first.endswith(".libs"):
        first = first[:-len(".libs")]
    elif first.endswith(".dist-info"):
        first = first.split("-", 1)[0].lower()
    return {"scikit_learn": "sklearn", "python_dateutil": "dateutil"}.get(first, first)


def zip_sizes(zip_path, model_rel):
    """{package: bytes in the zip (compressed data + its local and central
    directory headers)}, the whole zip's size and the room left for a model
    under the 50 MiB direct upload."""
    sizes = {}
    with zipfile.ZipFile(zip_path) as zf:
        for info in zf.infolist():
            cost = (info.compress_size + 30 + 46 + 2 * len(info.filename.encode())
                    + len(info.extra) + len(info.comment))
            key = top_level(info.filename, model_rel)
            sizes[key] = sizes.get(key, 0) + cost
    total = os.path.getsize(zip_path)
    model_bytes = sizes.get("model", 0)
    return {"packages": sorted(sizes.items(), key=lambda kv: -kv[1]), "zipped": total,
            "model": model_bytes, "without_model": total - model_bytes,
            "room_for_model": ZIP_LIMIT - (total - model_bytes)}


# --------------------------------------------------------------------------
# Lambda estimate


def lambda_estimate(seconds, memory_mb):
    """Init on Lambda at ``memory_mb``, estimated from a cold start measured
    on one full core: Lambda gives memory/1,769 of a vCPU below 1,769 MB, so
    CPU-bound work takes 1,769/memory times as long (file I/O need not
    scale: an upper estimate when the cold start is not all CPU)."""
    return seconds * max(1.0, FULL_CORE_MB / float(memory_mb))
