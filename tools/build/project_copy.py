"""Throwaway copies of the project, for builds, packaging and benchmarks
that must never touch the working tree (``chalice deploy`` writes
``.chalice/deployed/``, builds write ``.chalice/deployments/``).

A copy serves the bundled model: only ``model/iris`` is copied and every
stage's ``MODEL_DIR`` points at it, so the user's own models (other
directories of ``model/``, a stage configured to serve one) never change
what a test or a benchmark builds."""
import json
import os
import shutil

#: What Chalice, the build and the publisher read from a project.
PROJECT_FILES = ("app.py", "chalicelib", "model", "publisher", "vendor", ".chalice", "requirements.txt")
PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUNDLED = ("model", "iris")


def copy_project(dest, source=PROJECT_DIR):
    """Copy the project's files to ``dest`` (which must not exist), without
    bytecode, Chalice's package cache or deploy state; ``vendor/`` keeps
    its symlinks to the model. A project with one directory per model
    (``model/iris``) is copied with the bundled model only, served by every
    stage; an older single-model layout (``model/`` itself) as it is."""
    os.makedirs(dest)
    ignore = shutil.ignore_patterns("__pycache__", "deployments", "deployed", "*.pyc")
    bundled = os.path.join(source, *BUNDLED)
    for name in PROJECT_FILES:
        src = os.path.join(source, name)
        if not os.path.lexists(src):  # an older tree (bench --against) may lack one
            continue
        if name == BUNDLED[0] and os.path.isdir(bundled):
            shutil.copytree(bundled, os.path.join(dest, *BUNDLED), symlinks=True, ignore=ignore)
        elif os.path.isdir(src):
            shutil.copytree(src, os.path.join(dest, name), symlinks=True, ignore=ignore)
        else:
            shutil.copy2(src, os.path.join(dest, name))
    if os.path.isdir(bundled):
        _serve_bundled(os.path.join(dest, ".chalice", "config.json"))
    return dest


def _serve_bundled(config_file):
    with open(config_file) as f:
        config = json.load(f)
    changed = False
    for section in [config] + list(config.get("stages", {}).values()):
        env = section.get("environment_variables") or {}
        if "MODEL_DIR" in env and env["MODEL_DIR"] != "/".join(BUNDLED):
            env["MODEL_DIR"] = "/".join(BUNDLED)
            changed = True
    if changed:
        with open(config_file, "w") as f:
            json.dump(config, f, indent=2)
            f.write("\n")


def make_writable(tree):
    """Undo a read-only unpacking (directories 755, files 644), so it can be
    removed or replaced."""
    if not os.path.isdir(tree):
        return
    for root, dirs, files in os.walk(tree):
        os.chmod(root, 0o755)
        for name in files:
            full = os.path.join(root, name)
            if not os.path.islink(full):
                os.chmod(full, 0o644)
