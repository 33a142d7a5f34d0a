"""The real Lambda package of one battery family, and its cold start against
its own scikit-learn floor (``python -m tools.bench.battery`` calls these).

:func:`build` copies the project (:func:`tools.build.project_copy.copy_project`),
puts the family's published model directory in it as ``model/<name>``,
points the prod stage's ``MODEL_DIR`` at it and runs the real build
(``tools.build.package``, its own layout rule: one zip, or a function zip
and a layer zip when one zip would be over the 50 MiB direct upload). The
zip(s) and their sizes are kept in ``build/battery/<family>-<key>/``, keyed
by the model (artifact and graph sha256, runtime) and by what else goes
into a package (:func:`tools.bench.packages.sources_digest`): a rerun
reuses them. The zips are unpacked read-only as Lambda would (the function
as ``/var/task``, the layer's ``python/`` on ``sys.path`` after it).

:func:`cold_start` runs ``tools.bench``'s own cold-start processes side by
side, round after round (the first discarded): the package answering one
``POST /model`` of the notebook's row in a fresh isolated interpreter, and
the floor, a fresh interpreter in the venv importing scikit-learn and
joblib (and pandas for a DataFrame), loading the pickle and predicting the
same row. The ratio is paired per round; medians are reported.
"""
import hashlib
import json
import os
import shutil
import statistics

from tools.bench import __main__ as bench
from tools.bench.models import BENCH_DIR, PYTHON, REPO, Model, note
from tools.bench.packages import (WHEELS, remove_tree, run_or_die, served_runtime,
                                  sources_digest, stage_environment)
from tools.build.assemble import extract_read_only
from tools.build.layout import LAYER_PYTHON
from tools.build.project_copy import copy_project

BATTERY_DIR = os.path.join(os.path.dirname(BENCH_DIR), "battery")


def _key(card, digest):
    onnx = card.get("onnx") or {}
    text = "|".join([card["sha256"], onnx.get("sha256", ""), card.get("runtime", ""), digest])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def build(family, model_dir, card, digest=None):
    """The package meta of ``family`` (published in ``model_dir``): layout,
    zips with their sizes, the unpacked function (``task``) and layer
    directories, the stage environment and memory; built once per key."""
    digest = digest or sources_digest()
    cache = os.path.join(BATTERY_DIR, "%s-%s" % (family, _key(card, digest)))
    meta_file = os.path.join(cache, "meta.json")
    if os.path.isdir(BATTERY_DIR):
        for name in os.listdir(BATTERY_DIR):
            stale = os.path.join(BATTERY_DIR, name)
            if name.startswith(family + "-") and len(name) == len(family) + 17 \
                    and stale != cache:
                remove_tree(stale)
    meta = None
    if os.path.isfile(meta_file):
        with open(meta_file) as f:
            meta = json.load(f)
        if not all(os.path.isfile(z["path"]) for z in meta["zips"]):
            meta = None
    if meta is None:
        meta = _build(family, model_dir, cache)
        meta["key"] = os.path.basename(cache)
        with open(meta_file, "w") as f:
            json.dump(meta, f, indent=1)
    return _unpacked(meta, cache)


def _build(family, model_dir, cache):
    remove_tree(cache)
    os.makedirs(cache)
    project = copy_project(os.path.join(cache, "project"))
    name = family.replace("_", "-")
    shutil.copytree(model_dir, os.path.join(project, "model", name))
    config_file = os.path.join(project, ".chalice", "config.json")
    with open(config_file) as f:
        config = json.load(f)
    config["stages"]["prod"].setdefault("environment_variables", {})["MODEL_DIR"] = \
        "model/" + name
    with open(config_file, "w") as f:
        json.dump(config, f, indent=2)
    stage_env, memory = stage_environment(project)
    note("building the package of %s (tools.build.package, ~1-2 min)" % family)
    env = dict(os.environ, AWS_DEFAULT_REGION="us-east-1")
    output, seconds = run_or_die([PYTHON, "-m", "tools.build.package", "--project-dir", project,
                                  "--stage", "prod", "--wheels-dir", WHEELS], REPO, env,
                                 "tools.build.package for %s" % family)
    zips = []
    lines = output.splitlines()
    for i, line in enumerate(lines):
        role, _, rel = line.partition(": ")
        if role in ("package", "function", "layer") and rel.endswith(".zip"):
            built = rel if os.path.isabs(rel) else os.path.join(REPO, rel)  # the build's cwd
            kept = os.path.join(cache, role + ".zip")
            shutil.move(built, kept)
            sizes = lines[i + 1].strip().split()
            zips.append({"role": role, "path": kept, "zipped": os.path.getsize(kept),
                         "unzipped_mib": float(sizes[3])})
    if not zips:
        raise SystemExit("battery: the build of %s named no zip:\n%s" % (family, output[-3000:]))
    remove_tree(project)
    return {"family": family, "layout": "split" if len(zips) == 2 else "one", "zips": zips,
            "stage_env": stage_env, "memory": memory, "build_seconds": round(seconds, 1)}


def _unpacked(meta, cache):
    task, layers = None, []
    for z in meta["zips"]:
        dest = os.path.join(cache, "unzipped-" + z["role"])
        if not os.path.isfile(dest + ".complete"):
            remove_tree(dest)
            extract_read_only(z["path"], dest)
            open(dest + ".complete", "w").close()
        if z["role"] == "layer":
            layers.append(os.path.join(dest, LAYER_PYTHON))
        else:
            task = dest
    meta = dict(meta, task=task, layers=layers)
    meta["runtime"] = served_runtime(task, meta)
    return meta


def floor_row(notebook):
    """The notebook's first row without a missing value (a literal the
    floor's DataFrame is built from), its column dtypes, and the same row
    as a JSON record (what a client sends)."""
    complete = notebook[~notebook.isna().any(axis=1)]
    row = (complete if len(complete) else notebook).head(1)
    record = json.loads(row.to_json(orient="records"))[0]
    dtypes = {c: str(t) for c, t in row.dtypes.items()}
    return record, dtypes


def cold_start(family, artifact, notebook, pkg, rounds):
    """Medians (seconds) of the package's cold start and of its floor, the
    paired ratio per round and its median, and what each process imported."""
    if hasattr(notebook, "columns"):
        single, dtypes = floor_row(notebook)
        model = Model(family, family, artifact, single=single, batch=[],
                      input_kind="dataframe")
        model.dtypes = dtypes
    else:
        model = Model(family, family, artifact, single=notebook[0], batch=[],
                      input_kind="texts")
    floor_env = bench.child_env(None, {k: v for k, v in pkg["stage_env"].items()
                                       if k.endswith("_NUM_THREADS")}, pkg["memory"])
    variants = [bench.Variant("floor"), bench.Variant("package", pkg)]
    runs = bench.cold_starts(model, variants, rounds, floor_env)
    package_s = [r["seconds"] for r in runs["package"]]
    floor_s = [r["seconds"] for r in runs["floor"]]
    ratios = [p / f for p, f in zip(package_s, floor_s)]
    return {"rounds": rounds, "package_s": package_s, "floor_s": floor_s,
            "package_median_s": statistics.median(package_s),
            "floor_median_s": statistics.median(floor_s),
            "ratio_median": statistics.median(ratios), "ratios": ratios,
            "package_imported": runs["package"][0]["heavy"],
            "package_rss_kib": runs["package"][0]["rss_kib"]}
