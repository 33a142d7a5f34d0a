"""Throwaway copies of the project, for builds, packaging and benchmarks
that must never touch the working tree (``chalice deploy`` writes
``.chalice/deployed/``, builds write ``.chalice/deployments/``)."""
import os
import shutil

#: What Chalice, the build and the publisher read from a project.
PROJECT_FILES = ("app.py", "chalicelib", "model", "publisher", "vendor", ".chalice", "requirements.txt")
PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def copy_project(dest, source=PROJECT_DIR):
    """Copy the project's files to ``dest`` (which must not exist), without
    bytecode, Chalice's package cache or deploy state; ``vendor/`` keeps
    its symlinks to the model."""
    os.makedirs(dest)
    for name in PROJECT_FILES:
        src = os.path.join(source, name)
        if not os.path.lexists(src):  # an older tree (bench --against) may lack one
            continue
        if os.path.isdir(src):
            shutil.copytree(src, os.path.join(dest, name), symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__", "deployments",
                                                          "deployed", "*.pyc"))
        else:
            shutil.copy2(src, os.path.join(dest, name))
    return dest


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
