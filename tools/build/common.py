"""What every step of the build shares: Lambda's size limits, the package
layout constants, the error type, logging and small file helpers.

Standard library only, like every build module but :mod:`tools.build.chalice_view`
(which imports Chalice) and :mod:`tools.build.wheels` (``packaging``)."""
import os
import sys

from chalicelib.schema.card import sha256_of as _sha256  # noqa: F401 (one copy of each)
from tools.build.project_copy import make_writable as _make_writable  # noqa: F401

TOOLS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO_DIR = os.path.dirname(TOOLS_DIR)

MiB = 1024 * 1024
ZIP_LIMIT = 50 * MiB        # Lambda: direct upload (what `chalice deploy` does)
ZIP_WARN = 40 * MiB
UNZIPPED_LIMIT = 250 * MiB  # Lambda: function + layers, unzipped
ZIP_DATE = (2020, 1, 1, 0, 0, 0)
VENDOR_DIR = "vendor"
MODEL_DIR = "model"          # where the app looks for its model, in the package
SKIP_DIRS = {"__pycache__"}
SKIP_SUFFIXES = (".pyc", ".pyo")


class BuildError(Exception):
    """The build cannot produce a package that works; the message says why."""


def log(msg):
    print("build: %s" % msg, flush=True)


def warn(msg):
    print("build: warning: %s" % msg, file=sys.stderr, flush=True)


def _rel(path):
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel
