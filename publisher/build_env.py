"""Build environments: a virtual environment holding the scikit-learn
release that saved a model, made with pip on demand and cached.

``publisher.publish`` loads, inspects and compiles a model saved by another
scikit-learn inside such an environment (:mod:`publisher.other_version`),
so the model is read by the code that wrote it. :data:`RELEASES` says, per
scikit-learn release series, the numpy/scipy/joblib/pandas pins that have
wheels for it and the Pythons to try, newest first; the ONNX stack
(skl2onnx, onnx, onnxruntime and their dependencies) is the one this
project pins, so a graph is checked in there by the ONNX Runtime that serves
it. Every pin is exact and every package a wheel (``--only-binary``).

An environment lives in ``~/.cache/sklearn-serverless/envs/
sklearn-<version>-py<X.Y>`` (``$XDG_CACHE_HOME`` moves the root). It is made
under a temporary name and renamed when pip has finished, with the pins
written beside it, so a half-built or stale environment is never used.
"""
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time

from publisher import dependencies

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PINS_FILE = "sklearn-serverless-pins.json"
PIP_TIMEOUT_S = 1800

# Per release series: the oldest release an environment is known for, the
# Pythons to try (newest first; ``since`` names the first release of the series
# with wheels for a Python, when not the oldest) and the pins with wheels for
# it. Before 1.4.2 scikit-learn is built against numpy 1, whose last release
# (1.26.4) has wheels up to Python 3.12; from 1.4.2 on numpy 2. scipy is 1.15
# throughout: older ones write a temporary file when scipy.stats is imported,
# which the audit's limits forbid, and 1.15 supports numpy 1.23.5 to 2.x.
NUMPY_1 = {"numpy": "1.26.4", "scipy": "1.15.3", "pandas": "2.2.3"}
RELEASES = {
    "1.1": {"oldest": "1.1.3", "pythons": ("3.11", "3.10"), "pins": NUMPY_1},
    "1.2": {"oldest": "1.2.0", "pythons": ("3.11", "3.10"), "pins": NUMPY_1},
    "1.3": {"oldest": "1.3.0", "pythons": ("3.12", "3.11", "3.10"), "since": {"3.12": "1.3.1"},
            "pins": NUMPY_1},
    "1.4": {"oldest": "1.4.2", "pythons": ("3.12", "3.11", "3.10"),
            "pins": {"numpy": "2.0.2", "scipy": "1.15.3", "pandas": "2.2.3"}},
    "1.5": {"oldest": "1.5.0", "pythons": ("3.12", "3.11", "3.10"),
            "pins": {"numpy": "2.0.2", "scipy": "1.15.3", "pandas": "2.2.3"}},
    "1.6": {"oldest": "1.6.0", "pythons": ("3.12", "3.11", "3.10"),
            "pins": {"numpy": "2.2.6", "scipy": "1.15.3", "pandas": "2.2.3"}},
    "1.7": {"oldest": "1.7.0", "pythons": ("3.12", "3.11", "3.10"),
            "pins": {"numpy": "2.2.6", "scipy": "1.15.3", "pandas": "2.2.3"}},
}
# Taken from this project's requirements: joblib because the restricted
# unpickler is written against its internals (it reads older joblib files), the
# ONNX stack so that the graph is made and checked by the runtime that serves it.
SHARED = ("joblib", "skl2onnx", "onnx", "onnxruntime", "protobuf", "flatbuffers", "packaging",
          "python-dateutil", "pytz", "six", "tzdata", "threadpoolctl")
# onnx's own dependencies, which the project does not pin (it never ships onnx).
EXTRA = {"ml-dtypes": "0.5.4", "typing-extensions": "4.16.0"}


class NoEnvironment(Exception):
    """No build environment can be had for this release; the message says why."""


def release_of(version):
    """The :data:`RELEASES` entry for ``version``; NoEnvironment if none."""
    match = re.match(r"(\d+)\.(\d+)\.(\d+)\Z", version or "")
    series = "%s.%s" % match.groups()[:2] if match else None
    release = RELEASES.get(series)
    if release is None or _key(version) < _key(release["oldest"]):
        known = ", ".join("%s.x (from %s)" % (s, r["oldest"]) for s, r in RELEASES.items())
        raise NoEnvironment("no build environment is known for scikit-learn %s (known: %s)"
                            % (version, known))
    return release


def _key(version):
    return tuple(int(p) for p in version.split("."))


def requirements(version):
    """The exact pins an environment for scikit-learn ``version`` installs."""
    release = release_of(version)
    project = dependencies.pinned(os.path.join(PROJECT_DIR, "requirements.txt"))
    project.update(dependencies.pinned(os.path.join(PROJECT_DIR, "requirements-dev.txt")))
    pins = {"scikit-learn": version}
    pins.update(release["pins"])
    for name in SHARED:
        pins[name] = project[dependencies.canonical(name)]
    pins.update(EXTRA)
    return ["%s==%s" % item for item in sorted(pins.items())]


def find_python(minor):
    """An interpreter of Python ``minor`` ("3.11") on this machine, or None:
    this one, one on PATH, or one pyenv installed."""
    if "%d.%d" % sys.version_info[:2] == minor:
        return getattr(sys, "_base_executable", None) or sys.executable
    candidates = [shutil.which("python" + minor)]
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    versions = os.path.join(root, "versions")
    if os.path.isdir(versions):
        candidates += [os.path.join(versions, v, "bin", "python" + minor)
                       for v in sorted(os.listdir(versions), reverse=True)
                       if v.startswith(minor + ".")]
    for path in filter(None, candidates):
        try:
            ok = subprocess.run([path, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if ok.returncode == 0 and ok.stdout.strip() == minor:
            return path
    return None


def python_for(version):
    """``(minor, interpreter)``: the first Python the release has wheels for
    that this machine has; NoEnvironment naming them all if none."""
    minors = pythons(version)
    for minor in minors:
        path = find_python(minor)
        if path:
            return minor, path
    raise NoEnvironment("scikit-learn %s needs one of Python %s (it has wheels for them) and "
                        "none is installed here (pyenv install %s)"
                        % (version, ", ".join(minors), minors[0]))


def pythons(version):
    """The Python minors scikit-learn ``version`` has wheels for, newest first."""
    release = release_of(version)
    since = release.get("since", {})
    return tuple(m for m in release["pythons"]
                 if _key(version) >= _key(since.get(m, release["oldest"])))


def cache_root():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(base, "sklearn-serverless", "envs")


def env_dir(version, minor, root=None):
    return os.path.join(root or cache_root(), "sklearn-%s-py%s" % (version, minor))


def env_python(path):
    return os.path.join(path, "bin", "python")


def _ready(path, pins):
    try:
        with open(os.path.join(path, PINS_FILE)) as f:
            return json.load(f) == pins and os.access(env_python(path), os.X_OK)
    except (OSError, ValueError):
        return False


def ensure(version, root=None, log=None):
    """The interpreter of the build environment for scikit-learn
    ``version``, made now if the cache lacks it. Returns ``(python path,
    description)``; the description (versions, seconds spent building, 0
    when cached) goes on the card. NoEnvironment when it cannot be made."""
    minor, base = python_for(version)
    pins = requirements(version)
    path = env_dir(version, minor, root)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    started = time.monotonic()
    with open(path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two publishes build one environment once
        built = not _ready(path, pins)
        if built:
            _build(path, base, pins, version, log)
    python = env_python(path)
    return python, {"python": _python_version(python), "packages": pins,
                    "build_seconds": round(time.monotonic() - started, 1) if built else 0}


def _build(path, base, pins, version, log):
    tmp = path + ".building"
    shutil.rmtree(tmp, ignore_errors=True)
    if log:
        log("building a scikit-learn %s environment in %s (once; cached)" % (version, path))
    if os.path.isfile(os.path.join(path, PINS_FILE)):
        os.rename(path, tmp)  # a complete one with other pins: pip changes only those
    try:
        if not os.path.isdir(tmp):
            _run([base, "-m", "venv", tmp], "python -m venv")
        _run([env_python(tmp), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
              "--no-input", "--only-binary=:all:", *pins], "pip install")
    except NoEnvironment:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    with open(os.path.join(tmp, PINS_FILE), "w") as f:
        json.dump(pins, f, indent=1)
    shutil.rmtree(path, ignore_errors=True)
    os.rename(tmp, path)


def _run(command, what):
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise NoEnvironment("%s took over %d s" % (what, PIP_TIMEOUT_S)) from None
    if result.returncode != 0:
        tail = " ".join((result.stderr or result.stdout).strip().splitlines()[-3:])[:500]
        raise NoEnvironment("%s failed: %s" % (what, tail))


def _python_version(python):
    result = subprocess.run([python, "-c", "import platform; print(platform.python_version())"],
                            capture_output=True, text=True, timeout=60)
    return result.stdout.strip()
