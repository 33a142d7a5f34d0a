"""Trimming: which files of the unpacked dependencies ship (from the
trace), the OpenMP runtime a shipped extension may need, and the ELF
``DT_NEEDED`` reader both rely on."""
import os
import shutil

from tools.build.common import BuildError, log

def select_files(site_dir, report):
    """The files of ``site_dir`` that ship, as sorted relative paths.

    Rules (proven by the package test with two model families):

    * every Python package (directory with ``__init__.py``) from which the
      trace imported a module ships all of its ``.py`` modules (not its
      subpackages): a module imported lazily on a path the trace did not
      take is then still there, while untouched subpackages (scipy.io,
      sklearn.datasets, numpy.f2py, ...) stay out;
    * extension modules (``.so``) ship only if the trace loaded them;
    * every file the trace opened ships (data files, ``METADATA`` read by
      importlib.metadata), and every shared library it mapped (``*.libs/``);
      plus the ``*.libs/`` libraries that a shipped extension links to
      (DT_NEEDED), which the dynamic loader needs whatever the trace did;
    * every ``*.dist-info`` directory ships (small; importlib.metadata
      finds distributions through them), minus ``RECORD`` (its hashes
      would not match the stripped, trimmed files);
    * nothing from ``tests/`` ships except what the trace imported
      (``numpy/_core/tests/_natype.py`` is imported at run time);
    * a module whose source the trace read after importing it (the app's
      restricted unpickler checks joblib's source with ``inspect.getsource``)
      ships its ``.py`` too: returned as the second set.
    """
    site_dir = os.path.abspath(site_dir)
    prefix = site_dir + os.sep
    used = set()
    for path in list(report["opened"]) + list(report["mapped"]):
        path = os.path.normpath(path)
        if path.startswith(prefix) and os.path.isfile(path):
            used.add(os.path.relpath(path, site_dir))
    for _, path in report["modules"]:
        if path and path.startswith(prefix):
            used.add(os.path.relpath(path, site_dir))
    keep = set(used)
    package_dirs = set()
    for rel in used:
        if rel.endswith(".py") or rel.endswith(".so"):
            directory = os.path.dirname(rel)
            while directory:
                package_dirs.add(directory)
                directory = os.path.dirname(directory)
    for directory in package_dirs:
        if "tests" in directory.split(os.sep):
            continue  # only what was imported from a tests/ folder
        full = os.path.join(site_dir, directory)
        if not os.path.isfile(os.path.join(full, "__init__.py")):
            continue
        for name in os.listdir(full):
            if name.endswith(".py"):
                keep.add(os.path.join(directory, name))
    for name in os.listdir(site_dir):
        if name.endswith(".dist-info"):
            for root, _, files in os.walk(os.path.join(site_dir, name)):
                for f in files:
                    if f != "RECORD":
                        keep.add(os.path.relpath(os.path.join(root, f), site_dir))
    # Libraries the shipped extensions link to (the loader needs them).
    libs = {}
    for name in os.listdir(site_dir):
        if name.endswith(".libs") and os.path.isdir(os.path.join(site_dir, name)):
            for lib in os.listdir(os.path.join(site_dir, name)):
                libs.setdefault(lib, os.path.join(name, lib))
    pending = [rel for rel in keep if _is_shared_object(rel)]
    seen = set()
    while pending:
        rel = pending.pop()
        if rel in seen:
            continue
        seen.add(rel)
        for needed in _needed(os.path.join(site_dir, rel)):
            if needed in libs and libs[needed] not in keep:
                keep.add(libs[needed])
                pending.append(libs[needed])
    sources = {os.path.relpath(p, site_dir) for p in report.get("reread", ())
               if p.startswith(prefix)}
    return sorted(keep), sources


#: Where a shared library the runtime may lack ships: Lambda's
#: LD_LIBRARY_PATH ends with /var/task/lib (after the runtime's own /lib64,
#: so a system copy, if the runtime has one, still wins).
RUNTIME_LIB_DIR = "lib"
OPENMP = "libgomp.so.1"


def ship_openmp_runtime(site_dir, keep):
    """A shipped extension that links to ``libgomp.so.1`` by that plain name
    (lightgbm's ``lib_lightgbm.so``; wheels that vendor it, as scikit-learn
    and xgboost-cpu do, link to a renamed copy in their ``*.libs``) gets
    one in ``lib/``: Lambda's python runtimes have been reported without
    libgomp (dmlc/xgboost#11048, python3.9), and the manylinux policy lets
    wheels assume it is there. The copy is a wheel's vendored libgomp
    (built for manylinux2014, glibc 2.17), never this machine's. Returns
    ``keep`` with it added, or unchanged."""
    users = [rel for rel in keep if _is_shared_object(rel)
             and OPENMP in _needed(os.path.join(site_dir, rel))]
    if not users:
        return keep
    vendored = sorted(os.path.join(name, lib) for name in os.listdir(site_dir)
                      if name.endswith(".libs") and os.path.isdir(os.path.join(site_dir, name))
                      for lib in os.listdir(os.path.join(site_dir, name))
                      if lib.startswith("libgomp"))
    if not vendored:
        raise BuildError("%s need %s, which no wheel vendors and the Lambda runtime may lack"
                         % (", ".join(sorted(users)), OPENMP))
    target = os.path.join(site_dir, RUNTIME_LIB_DIR, OPENMP)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.copyfile(os.path.join(site_dir, vendored[0]), target)
    log("openmp: %s need %s; shipping %s as %s/%s"
        % (", ".join(sorted(users)), OPENMP, vendored[0], RUNTIME_LIB_DIR, OPENMP))
    return sorted(set(keep) | {os.path.join(RUNTIME_LIB_DIR, OPENMP)})


def _is_shared_object(rel):
    return rel.endswith(".so") or ".so." in os.path.basename(rel)


def _needed(path):
    """DT_NEEDED entries of an ELF64 little-endian shared object (what the
    dynamic loader will load with it); plain Python, no binutils needed."""
    import struct
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise BuildError("%s is not a 64-bit little-endian ELF file" % path)
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)
                for i in range(shnum)]
    needed = []
    for _, sh_type, _, _, offset, size, link, _, _, entsize in sections:
        if sh_type != 6:  # SHT_DYNAMIC
            continue
        strtab_offset = sections[link][4]
        for pos in range(offset, offset + size, entsize or 16):
            tag, value = struct.unpack_from("<qQ", data, pos)
            if tag == 0:  # DT_NULL
                break
            if tag == 1:  # DT_NEEDED
                end = data.index(b"\0", strtab_offset + value)
                needed.append(data[strtab_offset + value:end].decode())
    return needed
