"""What Chalice would do, computed by Chalice's own code: the deployment
cache file name, the app files it packages, the runtime and the wheel tags;
plus the staging of those app files (and ``vendor/``) for the build."""
import json
import os
import py_compile
import shutil
import sys

from tools.build.common import SKIP_DIRS, SKIP_SUFFIXES, VENDOR_DIR, BuildError, log

class ChaliceView:
    """The parts of Chalice's packager this build must agree with, computed
    by Chalice's own code for ``project_dir`` and ``stage``."""

    def __init__(self, project_dir, stage):
        from chalice.config import Config
        from chalice.deploy.packager import (AppOnlyDeploymentPackager, DependencyBuilder,
                                             LambdaDeploymentPackager, LayerDeploymentPackager)
        from chalice.utils import UI, OSUtils

        config_file = os.path.join(project_dir, ".chalice", "config.json")
        try:
            with open(config_file) as f:
                from_disk = json.load(f)
        except (OSError, ValueError) as exc:
            raise BuildError("cannot read %s: %s" % (config_file, exc)) from None
        if stage not in from_disk.get("stages", {}):
            raise BuildError("stage %r is not in %s" % (stage, config_file))
        config = Config(chalice_stage=stage, config_from_disk=from_disk,
                        user_provided_params={"project_dir": project_dir})
        self.config_file = config_file
        self.stage = stage
        self.automatic_layer = bool(config.automatic_layer)
        self.architecture = config.lambda_architecture
        if self.architecture != "x86_64":
            raise BuildError("lambda_architecture %s: this build targets x86_64 only "
                             "(the trace runs the package on this machine)" % self.architecture)
        self.python_version = config.lambda_python_version        # 'python3.12'
        self.environment = dict(config.environment_variables or {})
        osutils = OSUtils()
        self.dependency_builder = DependencyBuilder(osutils, architecture=self.architecture)
        self.packager = LambdaDeploymentPackager(
            osutils=osutils, dependency_builder=self.dependency_builder, ui=UI(),
            architecture=self.architecture)
        # What Chalice ships instead with automatic_layer: the app files
        # alone, and requirements.txt + vendor/ in its managed layer.
        self.app_packager = AppOnlyDeploymentPackager(
            osutils=osutils, dependency_builder=self.dependency_builder, ui=UI(),
            architecture=self.architecture)
        self.layer_packager = LayerDeploymentPackager(
            osutils=osutils, dependency_builder=self.dependency_builder, ui=UI(),
            architecture=self.architecture)
        self.abi = self.packager._RUNTIME_TO_ABI[self.python_version]  # 'cp312'
        self.platforms = self.dependency_builder._get_pip_platforms(self.abi)
        self.project_dir = project_dir
        expected_tag = "cpython-%s" % self.abi[2:]
        if sys.implementation.cache_tag != expected_tag:
            raise BuildError("this build runs on %s but the Lambda runtime is %s; run it "
                             "with the project's Python (%s)"
                             % (sys.implementation.cache_tag, self.python_version, expected_tag))

    def package_filename(self):
        return self.packager.deployment_package_filename(self.project_dir, self.python_version)

    def split_filenames(self):
        """(function, layer): the cache files Chalice reuses for a stage with
        ``automatic_layer`` (``appcode-<hash>`` hashes the app files,
        ``managed-layer-<hash>`` requirements.txt and vendor/)."""
        return (self.app_packager.deployment_package_filename(self.project_dir,
                                                               self.python_version),
                self.layer_packager.deployment_package_filename(self.project_dir,
                                                                 self.python_version))

    def cache_filenames(self, split):
        return self.split_filenames() if split else (self.package_filename(),)

    def app_files(self):
        """(source, zip path) of app.py, chalicelib/ and Chalice's runtime,
        as Chalice packages them, minus bytecode caches."""
        for source, zip_path in self.packager._iter_app_filenames(self.project_dir):
            parts = zip_path.split("/")
            if SKIP_DIRS.intersection(parts) or zip_path.endswith(SKIP_SUFFIXES):
                continue
            yield source, zip_path

    def is_compatible_wheel(self, filename):
        return self.dependency_builder._is_compatible_wheel_filename(self.abi, filename)


def vendor_files(project_dir):
    """(source, zip path) of vendor/'s contents, following symlinks as Chalice does."""
    vendor = os.path.join(project_dir, VENDOR_DIR)
    for root, dirs, files in os.walk(vendor, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        for name in sorted(files):
            if name.endswith(SKIP_SUFFIXES):
                continue
            full = os.path.join(root, name)
            yield full, os.path.relpath(full, vendor).replace(os.sep, "/")


def settle_bytecode(project_dir):
    """Chalice's cache name hashes every file under chalicelib/, __pycache__
    included, so a .pyc written later (by the first test run or `chalice
    local`) would change the name and make Chalice build its own untrimmed
    package. Write now, exactly as the import system would, the .pyc that any
    later import on this Python would write; the name then stays put until a
    source changes."""
    libdir = os.path.join(project_dir, "chalicelib")
    for root, dirs, files in os.walk(libdir):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
        for name in files:
            if name.endswith(".py"):
                source = os.path.join(root, name)
                cfile = py_compile.importlib.util.cache_from_source(source)
                if _pyc_is_fresh(source, cfile):
                    continue
                py_compile.compile(source, cfile=cfile, doraise=True,
                                   invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP)


def _pyc_is_fresh(source, cfile):
    try:
        with open(cfile, "rb") as f:
            header = f.read(16)
    except OSError:
        return False
    import importlib.util
    if len(header) < 16 or header[:4] != importlib.util.MAGIC_NUMBER:
        return False
    flags = int.from_bytes(header[4:8], "little")
    if flags & 1:  # hash-based: valid for as long as the source hash matches
        return True
    st = os.stat(source)
    return (int.from_bytes(header[8:12], "little") == int(st.st_mtime) & 0xFFFFFFFF
            and int.from_bytes(header[12:16], "little") == st.st_size & 0xFFFFFFFF)


def stage_app(view, app_dir, model_rel=None):
    """Copy what Chalice takes from the project (app files + vendor/) into
    ``app_dir``; return {zip path: source}. ``vendor/model`` links to every
    published model; with ``model_rel`` (``model/NAME``, the stage's) only
    that one ships, the others stay out of the package."""
    if os.path.isdir(app_dir):
        shutil.rmtree(app_dir)
    entries = {}
    others = set()
    for source, zip_path in list(view.app_files()) + list(vendor_files(view.project_dir)):
        if model_rel and _is_other_model(zip_path, model_rel):
            others.add("/".join(zip_path.split("/")[:2]))
            continue
        if zip_path in entries:
            raise BuildError("%s is both an app file and in vendor/" % zip_path)
        entries[zip_path] = source
        target = os.path.join(app_dir, *zip_path.split("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(source, target)  # follows symlinks, as Chalice does
    if others:
        log("model: the stage serves %s; %s stay out of the package"
            % (model_rel, ", ".join(sorted(others))))
    return entries


def _is_other_model(zip_path, model_rel):
    top = model_rel.split("/", 1)[0]
    return (zip_path.startswith(top + "/")
            and not zip_path.startswith(model_rel.rstrip("/") + "/"))
