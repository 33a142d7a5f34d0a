"""Assembly: the package tree (kept files, stripped extensions, bytecode),
the deterministic zip, its read-only unpacking (as Lambda's /var/task) and
the size budget under Lambda's limits."""
import os
import py_compile
import shutil
import stat
import subprocess
import zipfile

from tools.build.common import (UNZIPPED_LIMIT, ZIP_DATE, ZIP_LIMIT, ZIP_WARN, BuildError, MiB,
                                _make_writable, log, warn)
from tools.build.trim import RUNTIME_LIB_DIR

#: Packages that build docstrings from other docstrings at import
#: (lightgbm/dask.py: ``__doc__.partition``): compiled without -OO's
#: docstring removal (optimize at most 1), or they fail to import.
READS_OWN_DOCSTRINGS = frozenset({"lightgbm"})


def assemble(site_dir, keep, sources, app_dir, pkg_dir, keep_sources, optimize):
    """Lay out the package in ``pkg_dir``: the kept dependency files
    (extension modules stripped), the app files, and bytecode for every
    module (Lambda's /var/task is read-only: without bytecode every cold
    start compiles every module it imports, and caches nothing).

    * app files (``app.py``, ``chalicelib/``, ``chalice/``): source plus an
      unchecked-hash ``__pycache__/*.cpython-312.pyc``, compiled as usual
      (asserts and docstrings kept), so their tracebacks show source lines;
    * dependencies: by default *sourceless* bytecode (``module.pyc`` in place
      of ``module.py``, which CPython imports directly) compiled at
      ``optimize`` (2: without docstrings and asserts, as ``python -OO``
      would); with ``keep_sources`` the source stays too and the bytecode
      goes to ``__pycache__`` (unchecked hash); so it does for the modules in
      ``sources``, whose source the app reads at run time."""
    _make_writable(pkg_dir)
    if os.path.isdir(pkg_dir):
        shutil.rmtree(pkg_dir)
    strip = shutil.which("strip")
    if strip is None:
        warn("`strip` (binutils) not found: extension modules ship unstripped")
    to_strip = []
    for rel in keep:
        target = os.path.join(pkg_dir, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(os.path.join(site_dir, rel), target)
        top = rel.split(os.sep, 1)[0]
        if strip and rel.endswith(".so") and not top.endswith(".libs") \
                and top != RUNTIME_LIB_DIR:
            to_strip.append(target)  # never the vendored libraries: breaks OpenBLAS
    for start in range(0, len(to_strip), 50):
        subprocess.run([strip, "--strip-unneeded"] + to_strip[start:start + 50], check=True)
    for root, dirs, files in os.walk(app_dir):
        for name in files:
            source = os.path.join(root, name)
            rel = os.path.relpath(source, app_dir)
            target = os.path.join(pkg_dir, rel)
            if os.path.exists(target):
                raise BuildError("%s is both an app file and a dependency file" % rel)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copyfile(source, target)
    import importlib.util
    app_files = set()
    for root, dirs, files in os.walk(app_dir):
        for name in files:
            app_files.add(os.path.relpath(os.path.join(root, name), app_dir))
    for root, dirs, files in os.walk(pkg_dir):
        for name in files:
            if not name.endswith(".py"):
                continue
            source = os.path.join(root, name)
            rel = os.path.relpath(source, pkg_dir)
            is_app = rel in app_files
            sourceless = not (is_app or keep_sources or rel in sources)
            cfile = source + "c" if sourceless else importlib.util.cache_from_source(source)
            level = 0 if is_app else optimize
            if rel.split(os.sep, 1)[0] in READS_OWN_DOCSTRINGS:
                level = min(level, 1)
            py_compile.compile(source, cfile=cfile, dfile="/var/task/" + rel.replace(os.sep, "/"),
                               doraise=True, optimize=level,
                               invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
            if sourceless:
                os.remove(source)


def write_zip(pkg_dir, zip_path, compresslevel, select=None, prefix=""):
    """Deterministic zip: sorted entries, fixed timestamps, world-readable
    modes (Lambda runs the code as another user than the one who zipped).
    ``select(rel)`` picks the files of ``pkg_dir`` that go in (``rel``:
    relative, ``/`` separators; default: all); ``prefix`` is the folder they
    go under in the zip."""
    entries = []
    for root, dirs, files in os.walk(pkg_dir):
        for name in files:
            full = os.path.join(root, name)
            rel = os.path.relpath(full, pkg_dir).replace(os.sep, "/")
            if select is None or select(rel):
                entries.append((prefix + rel, full))
    entries.sort()
    tmp = zip_path + ".tmp"
    unzipped = 0
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=compresslevel) as zf:
        for arcname, full in entries:
            info = zipfile.ZipInfo(arcname, ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            executable = os.stat(full).st_mode & stat.S_IXUSR or arcname.endswith(".so") \
                or ".so." in arcname
            info.external_attr = ((0o100755 if executable else 0o100644) & 0xFFFF) << 16
            with open(full, "rb") as f:
                data = f.read()
            unzipped += len(data)
            zf.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED,
                        compresslevel=compresslevel)
    os.replace(tmp, zip_path)
    return {"zipped": os.path.getsize(zip_path), "unzipped": unzipped, "files": len(entries),
            "by_top": zipped_by_top(zip_path)}


def zipped_by_top(zip_path):
    """Compressed bytes per top-level entry of the zip (a package, a
    ``*.libs`` directory, a module; the ``*.dist-info`` together), largest
    first; what is left of the zip's size is its headers."""
    by_top = {}
    with zipfile.ZipFile(zip_path) as zf:
        for info in zf.infolist():
            top = info.filename.split("/", 1)[0]
            top = "*.dist-info" if top.endswith(".dist-info") else top
            by_top[top] = by_top.get(top, 0) + info.compress_size
    return dict(sorted(by_top.items(), key=lambda item: (-item[1], item[0])))


def extract_read_only(zip_path, target):
    """Unzip like Lambda does into a read-only tree (as /var/task is)."""
    _make_writable(target)
    if os.path.isdir(target):
        shutil.rmtree(target)
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(target)
    for root, dirs, files in os.walk(target, topdown=False):
        for name in files:
            os.chmod(os.path.join(root, name), 0o444)
        os.chmod(root, 0o555)


def check_size(sizes, direct_upload=False, model_rel=None, split=False):
    """The budget under each of Lambda's limits, and the deploy route that
    fits: ``chalice deploy`` uploads the zip directly (50 MiB zipped); over
    that, the CloudFormation route (``make package``, then ``aws
    cloudformation package`` + ``deploy``, the zip going through S3) allows
    up to 250 MiB unzipped. ``direct_upload`` (``make deploy``) makes the
    50 MiB limit an error. With ``split`` the one zip is only reported:
    the function and its layer are checked each (:mod:`tools.build.layout`)."""
    zipped, unzipped = sizes["zipped"], sizes["unzipped"]
    # Split, the one zip's room is no verdict (a negative one is why it splits):
    # the function and layer zips, reported later, are what must fit.
    one_zip = " as one zip, before the split into function + layer" if split else ""
    log("budget: %.1f MiB zipped%s (%.1f MiB left under the 50 MiB direct upload), "
        "%.1f MiB unzipped (%.1f MiB left under 250 MiB)"
        % (zipped / MiB, one_zip, (ZIP_LIMIT - zipped) / MiB, unzipped / MiB,
           (UNZIPPED_LIMIT - unzipped) / MiB))
    by_top = sizes.get("by_top")
    if by_top:
        model_top = (model_rel or "model").split("/", 1)[0]
        model = by_top.get(model_top, 0)
        log("budget: zipped MiB per top-level entry: " + ", ".join(
            "%s %.2f" % (top, size / MiB) for top, size in by_top.items()
            if size >= 0.005 * MiB) + ", zip headers %.2f" % ((zipped - sum(by_top.values())) / MiB))
        log("budget: the model (%s/) %.2f MiB zipped, everything else %.2f MiB: room for the "
            "model under the 50 MiB direct upload: %.1f MiB zipped%s"
            % (model_top, model / MiB, (zipped - model) / MiB, (ZIP_LIMIT - zipped + model) / MiB,
               " in one zip" if split else ""))
    if unzipped > UNZIPPED_LIMIT:
        raise BuildError("the package is %.1f MiB unzipped, over Lambda's 250 MiB limit"
                         % (unzipped / MiB))
    if split:
        return
    if zipped > ZIP_LIMIT:
        message = ("the package is %.1f MiB zipped, over Lambda's 50 MiB limit for a direct "
                   "upload (what `chalice deploy` does)" % (zipped / MiB))
        if direct_upload:
            raise BuildError(message + "; deploy it through S3 instead: `make package`, then "
                             "`aws cloudformation package` + `aws cloudformation deploy` "
                             "(docs/deploy.md)")
        warn(message + ": deploy it with `make package` and `aws cloudformation package` + "
             "`deploy` (the zip goes through S3; docs/deploy.md), not `make deploy`")
    elif zipped > ZIP_WARN:
        warn("the package is %.1f MiB zipped: within 50 MiB, but above the 40 MiB aimed for"
             % (zipped / MiB))
