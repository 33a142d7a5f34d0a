"""The package's layout on Lambda: one function zip, or a function zip plus
a Lambda layer zip when the one zip would be over the 50 MiB direct upload.

Owns which top-level entries of the built package go with the function
(``/var/task``: the app, the model and the pandas group, what changes with
the model or only a DataFrame model needs) and which go into the layer
(``/opt/python``: numpy, scipy, scikit-learn and the rest), the rule that
picks the layout, the size budget of a split, and the stage setting that
makes Chalice ship it: Chalice's own ``automatic_layer``, under which
``chalice deploy`` publishes the layer and ``chalice package`` writes
``layer-deployment.zip`` next to ``deployment.zip``. Both reuse the two
cache files this build writes, as they reuse the one zip otherwise.

    .venv/bin/python -m tools.build.layout OUT/

prints what ``chalice package`` wrote into ``OUT/``: each zip, its role and
its size against Lambda's limits (``make package`` runs it)."""
import json
import os
import sys
import zipfile

from tools.build.common import UNZIPPED_LIMIT, ZIP_LIMIT, ZIP_WARN, BuildError, MiB, log, warn

#: Top-level entries that ship with the function. Anything else (numpy,
#: scipy, scikit-learn, their ``*.libs``, joblib, ...) goes into the layer.
FUNCTION_TOPS = ("app.py", "chalicelib", "chalice", "model", "lib", "pandas", "dateutil",
                 "pytz", "tzdata", "six.pyc", "six.py")
#: Their distributions' metadata (importlib.metadata finds it next to them).
FUNCTION_DIST_PREFIXES = ("pandas-", "python_dateutil-", "pytz-", "tzdata-", "six-")
#: Where a layer's Python files go: Lambda unzips a layer into /opt, and
#: every Python runtime has /opt/python on sys.path.
LAYER_PYTHON = "python"
LAYOUTS = ("auto", "one", "split")


def in_function(rel):
    """Whether the package's file (or top-level entry) ``rel``, a path
    relative to the package root with ``/`` separators, ships with the
    function. The root's ``__pycache__`` holds the bytecode of top-level
    modules (``app.py``'s): each file goes where its module goes."""
    parts = rel.split("/")
    top = parts[0]
    if top == "__pycache__" and len(parts) == 2:
        top = parts[1].split(".", 1)[0] + ".py"
    return top in FUNCTION_TOPS or (top.endswith(".dist-info")
                                    and top.startswith(FUNCTION_DIST_PREFIXES))


def choose(requested, one_zip_bytes):
    """``"one"`` or ``"split"``: ``auto`` splits only a package over the
    direct upload (the one zip stays the layout of everything that fits:
    one artifact, one cache file, and no cold-start cost measured either way)."""
    if requested not in LAYOUTS:
        raise BuildError("layout %r: one of %s" % (requested, ", ".join(LAYOUTS)))
    if requested != "auto":
        return requested
    return "split" if one_zip_bytes > ZIP_LIMIT else "one"


def check_split_size(function, layer, direct_upload=False):
    """Each zip under the 50 MiB direct upload (``chalice deploy`` uploads
    the function and publishes the layer with the bytes inline), and both
    together under Lambda's 250 MiB unzipped."""
    total = function["unzipped"] + layer["unzipped"]
    for label, sizes in (("function", function), ("layer", layer)):
        log("budget: %s zip %.2f MiB (%.1f MiB left under the 50 MiB direct upload), "
            "%.1f MiB unzipped" % (label, sizes["zipped"] / MiB,
                                   (ZIP_LIMIT - sizes["zipped"]) / MiB, sizes["unzipped"] / MiB))
    log("budget: function + layer %.1f MiB unzipped (%.1f MiB left under 250 MiB)"
        % (total / MiB, (UNZIPPED_LIMIT - total) / MiB))
    if total > UNZIPPED_LIMIT:
        raise BuildError("the function and its layer are %.1f MiB unzipped, over Lambda's "
                         "250 MiB limit" % (total / MiB))
    over = [(label, sizes["zipped"]) for label, sizes in (("function", function),
                                                          ("layer", layer))
            if sizes["zipped"] > ZIP_LIMIT]
    if over:
        message = ", ".join("the %s zip is %.1f MiB" % (label, size / MiB) for label, size in over) \
            + ", over Lambda's 50 MiB limit for a direct upload (what `chalice deploy` does)"
        if direct_upload:
            raise BuildError(message + "; deploy it through S3 instead: `make package`, then "
                             "`aws cloudformation package` + `aws cloudformation deploy` "
                             "(docs/deploy.md)")
        warn(message + ": deploy it with `make package` and `aws cloudformation package` + "
             "`deploy` (the zips go through S3; docs/deploy.md), not `make deploy`")
    elif function["zipped"] > ZIP_WARN:
        warn("the function zip is %.1f MiB: within 50 MiB, but above the 40 MiB aimed for"
             % (function["zipped"] / MiB))


def stage_automatic_layer(config, stage):
    """The stage's ``automatic_layer`` as Chalice resolves it (the stage's
    value wins over the top-level one; unset is false)."""
    stage_config = config.get("stages", {}).get(stage, {})
    return bool(stage_config.get("automatic_layer", config.get("automatic_layer", False)))


def record(config_file, stage, split):
    """Make ``stage`` of ``config_file`` ask Chalice for the layout built:
    ``automatic_layer: true`` for a split, no such key (or ``false`` where
    the top level sets it) for one zip. Only that key is touched; the file
    is rewritten only when it changes. Returns True when it did."""
    with open(config_file) as f:
        config = json.load(f)
    if stage_automatic_layer(config, stage) == split:
        return False
    stage_config = config["stages"][stage]
    if split:
        stage_config["automatic_layer"] = True
    elif config.get("automatic_layer"):
        stage_config["automatic_layer"] = False
    else:
        stage_config.pop("automatic_layer", None)
    tmp = config_file + ".tmp"
    with open(tmp, "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    os.replace(tmp, config_file)
    return True


#: What ``chalice package`` writes, by role.
OUTPUT_ROLES = {"deployment.zip": "the function (/var/task)",
                "layer-deployment.zip": "the layer (/opt)"}


def describe_outputs(out_dir):
    """Lines naming each file of ``out_dir`` with its size; the zips with
    their role, zipped and unzipped size; the budget of the two together."""
    lines = []
    unzipped = 0
    for name in sorted(os.listdir(out_dir)):
        path = os.path.join(out_dir, name)
        size = os.path.getsize(path)
        if name.endswith(".zip"):
            with zipfile.ZipFile(path) as zf:
                inflated = sum(i.file_size for i in zf.infolist())
            unzipped += inflated
            lines.append("%s: %s, %.2f MiB zipped (limit 50), %.2f MiB unzipped"
                         % (path, OUTPUT_ROLES.get(name, "a zip"), size / MiB, inflated / MiB))
        else:
            lines.append("%s: %.1f KiB" % (path, size / 1024))
    lines.append("unzipped together: %.2f MiB (limit 250)" % (unzipped / MiB))
    return lines


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not os.path.isdir(args[0]):
        print("usage: python -m tools.build.layout OUT_DIR", file=sys.stderr)
        return 2
    for line in describe_outputs(args[0]):
        print("    " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
