"""Dependencies: pinned ``requirements.txt`` -> wheels compatible with the
Lambda runtime (a cache shared by concurrent builds) -> an unpacked site
directory; pandas dropped unless the model uses it."""
import contextlib
import os
import re
import shutil
import subprocess
import sys
import zipfile

from tools.build.common import BuildError, _rel, log

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)\s*(?:#.*)?$")


def canonical(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(requirements):
    pins = {}
    with open(requirements) as f:
        for number, line in enumerate(f, 1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            match = _PIN.match(text)
            if not match:
                raise BuildError("%s:%d: %r is not an exact pin (name==version); the package "
                                 "is built from exact pins only" % (requirements, number, text))
            pins[canonical(match.group(1))] = match.group(2)
    if not pins:
        raise BuildError("%s pins nothing" % requirements)
    return pins


@contextlib.contextmanager
def locked(directory):
    """An exclusive lock on a cache directory shared by concurrent builds."""
    import fcntl
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, ".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _wheel_for(pin_name, version, filenames):
    for filename in filenames:
        parts = filename[:-4].split("-")
        if len(parts) >= 5 and canonical(parts[0]) == pin_name and parts[1] == version:
            return filename
    return None


def download_wheels(view, pins, requirements, wheels_dir):
    """One compatible wheel per pin, in ``wheels_dir`` (kept between builds)."""
    with locked(wheels_dir):
        present = sorted(f for f in os.listdir(wheels_dir) if f.endswith(".whl"))
        chosen = {name: _wheel_for(name, version, present) for name, version in pins.items()}
        if all(chosen.values()) and all(view.is_compatible_wheel(w) for w in chosen.values()):
            log("wheels: all %d pins already in %s" % (len(pins), _rel(wheels_dir)))
        else:
            cmd = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check",
                   "--no-deps", "--only-binary=:all:", "--implementation", "cp",
                   "--python-version", view.abi[2] + "." + view.abi[3:], "--abi", view.abi,
                   "--abi", "abi3", "--abi", "none", "--dest", wheels_dir, "--progress-bar", "off",
                   "-r", requirements]
            for platform in view.platforms + ["any"]:
                cmd += ["--platform", platform]
            log("wheels: pip download for %s (%s) into %s"
                % (view.python_version, ", ".join(view.platforms[-2:]), _rel(wheels_dir)))
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if proc.returncode != 0:
                missing = re.findall(r"No matching distribution found for (\S+)", proc.stdout)
                sys.stderr.write(proc.stdout)
                if missing:
                    raise BuildError(
                        "no wheel of %s fits the Lambda runtime (%s, x86_64, glibc <= %s); "
                        "pin a version that publishes a manylinux wheel for it"
                        % (", ".join(missing), view.python_version,
                           view.platforms[-2].split("_")[1] + "." + view.platforms[-2].split("_")[2]))
                raise BuildError("pip download failed (exit %d); see its output above"
                                 % proc.returncode)
            present = sorted(f for f in os.listdir(wheels_dir) if f.endswith(".whl"))
            chosen = {name: _wheel_for(name, version, present) for name, version in pins.items()}
    missing = sorted(name for name, wheel in chosen.items() if not wheel)
    if missing:
        raise BuildError("no wheel for %s after pip download" % ", ".join(missing))
    incompatible = sorted(w for w in chosen.values() if not view.is_compatible_wheel(w))
    if incompatible:
        raise BuildError("wheels not compatible with the Lambda runtime %s: %s"
                         % (view.python_version, ", ".join(incompatible)))
    wheels = [os.path.join(wheels_dir, chosen[name]) for name in sorted(chosen)]
    check_closure(wheels, pins, view)
    return wheels


# pandas and what only it needs. scikit-learn imports pandas whenever it is
# installed (sklearn.utils.fixes), so the trace alone would ship it for
# every model; the model decides instead.
PANDAS_GROUP = ("pandas", "python-dateutil", "pytz", "six", "tzdata")


def model_uses_pandas(artifact_path, card):
    """A model fitted on a DataFrame (the card's input), or one whose pickle
    names pandas (a pandas global, or ``set_output(transform="pandas")``)."""
    if card.get("input") == "dataframe":
        return True
    with open(artifact_path, "rb") as f:
        # lightgbm's Booster always records a "pandas_categorical" key (None
        # unless fitted on categorical DataFrame columns): not a use of pandas.
        return b"pandas" in f.read().replace(b"pandas_categorical", b"")


def drop_pandas_unless_used(wheels, artifact, card, runtime="scikit-learn"):
    if runtime == "onnxruntime":
        log("pandas: not shipped (the model is served by ONNX Runtime, fed numpy columns)")
        return [w for w in wheels
                if canonical(os.path.basename(w).split("-")[0]) not in PANDAS_GROUP]
    if model_uses_pandas(artifact, card):
        log("pandas: shipped (the model takes a DataFrame or names pandas)")
        return wheels
    log("pandas: not shipped (the model neither takes a DataFrame nor names pandas)")
    return [w for w in wheels
            if canonical(os.path.basename(w).split("-")[0]) not in PANDAS_GROUP]


def check_closure(wheels, pins, view):
    """Every runtime dependency of every wheel must itself be pinned: the
    download uses --no-deps, so an unpinned one would be silently absent."""
    try:
        from packaging.requirements import Requirement
    except ImportError:
        from pip._vendor.packaging.requirements import Requirement
    env = {"python_version": view.abi[2] + "." + view.abi[3:],
           "python_full_version": view.abi[2] + "." + view.abi[3:] + ".0",
           "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
           "platform_machine": "x86_64", "implementation_name": "cpython",
           "platform_python_implementation": "CPython", "extra": ""}
    problems = []
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as zf:
            metadata = next(n for n in zf.namelist()
                            if n.count("/") == 1 and n.endswith(".dist-info/METADATA"))
            text = zf.read(metadata).decode("utf-8")
        for line in text.splitlines():
            if not line:
                break  # end of headers
            if not line.startswith("Requires-Dist:"):
                continue
            req = Requirement(line.split(":", 1)[1].strip())
            if req.marker is not None and not req.marker.evaluate(env):
                continue
            name = canonical(req.name)
            if name not in pins:
                problems.append("%s requires %s, which requirements.txt does not pin"
                                % (os.path.basename(wheel).split("-")[0], req))
            elif not req.specifier.contains(pins[name], prereleases=True):
                problems.append("%s requires %s but requirements.txt pins %s"
                                % (os.path.basename(wheel).split("-")[0], req, pins[name]))
    if problems:
        raise BuildError("; ".join(problems))


def unpack_wheels(wheels, site_dir):
    """Install wheels the way Chalice does: contents at the root, the
    purelib/platlib parts of ``*.data`` merged in, other ``*.data`` dropped."""
    stamp = os.path.join(site_dir, ".wheels")
    wanted = "\n".join(os.path.basename(w) + " " + str(os.path.getsize(w)) for w in wheels)
    try:
        with open(stamp) as f:
            if f.read() == wanted:
                log("site: reusing %s" % _rel(site_dir))
                return
    except OSError:
        pass
    if os.path.isdir(site_dir):
        shutil.rmtree(site_dir)
    os.makedirs(site_dir)
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as zf:
            for info in zf.infolist():
                name = info.filename
                top = name.split("/", 1)[0]
                if top.endswith(".data"):
                    kind, _, rest = name[len(top) + 1:].partition("/")
                    if kind not in ("purelib", "platlib") or not rest:
                        continue
                    name = rest
                if name.endswith("/"):
                    continue
                target = os.path.join(site_dir, *name.split("/"))
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
    with open(stamp, "w") as f:
        f.write(wanted)
    log("site: unpacked %d wheels into %s" % (len(wheels), _rel(site_dir)))
