"""Build the Lambda deployment package and put it where Chalice will reuse it.

    .venv/bin/python -m tools.build.package [--project-dir DIR] [--stage prod]

Chalice caches its deployment package in ``.chalice/deployments/`` under a
name that hashes ``requirements.txt``, ``app.py``, ``chalicelib/`` and
``vendor/`` (and the Python version); when that file exists, ``chalice
deploy`` and ``chalice package`` print "Reusing existing deployment package"
and ship it as is. This build writes that very file, computed with Chalice's
own code, so plain ``chalice deploy --stage prod`` / ``chalice package --stage
prod OUT/`` ship the package built here instead of Chalice's untrimmed one
(61 MB zipped, over Lambda's 50 MiB direct-upload limit).

Steps, each of which fails loudly (exit status 2 and a message) instead of
leaving a broken or stale zip behind:

1. the pinned ``requirements.txt`` is downloaded as manylinux x86_64 wheels
   for the Lambda runtime (cp312, glibc 2.34: the platform tags Chalice
   itself asks pip for), no sdists, into ``build/wheels`` (a cache); every
   pin needs a compatible wheel and every dependency of a wheel needs a pin;
2. the wheels are unpacked into ``build/site``; the app files (the same ones
   Chalice packages: ``chalice/app.py``, ``chalice/__init__.py``, ``app.py``,
   ``chalicelib/``) and the stage's model (``MODEL_DIR``, default
   ``model/iris``: ``vendor/model`` links to ``model/``, so Chalice puts it
   at the Lambda's root; the other models stay out) into ``build/app``; the
   model's sha256 must match its card;
3. **trace**: a fresh isolated interpreter (``-I -S -B``: no site-packages,
   nothing but those two directories and the standard library) imports the
   app under the stage's environment variables and calls ``app.app(event,
   context)`` with API Gateway proxy events of every request format and
   error case, recording every file opened (audit hook) and every shared
   object mapped (``/proc/self/maps``);
   then the same requests again with every module it imported from Python
   source lazy (:mod:`tools.build.lazy`): those no request ran ship as
   ``chalicelib/_lazy_modules.json``, lazy in the package;
4. **trim**: what ships from the dependencies is what the trace used, at
   package granularity (see :func:`select_files`), extension modules
   stripped, every ``.py`` compiled to unchecked-hash ``.pyc``;
5. **layout** (:mod:`tools.build.layout`): a package over the 50 MiB direct
   upload is split into a function zip (the app, the model, pandas) and a
   layer zip (numpy, scipy, scikit-learn, ... under ``python/``), written
   as the two cache files Chalice reuses under ``automatic_layer``, which
   the build sets on the stage (and clears when one zip fits again);
   ``--layout one|split`` overrides the size rule;
6. **verify**: the zip (or the function as ``/var/task`` and the layer as
   ``/opt``) is unpacked into a read-only directory and the same requests
   are replayed there, isolated, lazy imports on; every answer must equal
   the one from the untrimmed dependencies;
7. size limits are checked and the zip(s) replace any other in
   ``.chalice/deployments/``.

The steps live in their own modules: :mod:`tools.build.chalice_view` (Chalice's
view), :mod:`tools.build.wheels`, :mod:`tools.build.model`,
:mod:`tools.build.exercise` (the requests, run isolated) and
:mod:`tools.build.trace`, :mod:`tools.build.lazy`, :mod:`tools.build.trim`,
:mod:`tools.build.assemble`, :mod:`tools.build.layout`.
This module runs them in order.
"""
import argparse
import os
import shutil
import sys
import time

from tools.build import layout
from tools.build.assemble import (assemble, check_size, extract_read_only,  # noqa: F401
                                  write_zip)
from tools.build.chalice_view import ChaliceView, settle_bytecode, stage_app
from tools.build.common import REPO_DIR, BuildError, MiB, _make_writable, _rel, log  # noqa: F401
from tools.build.exercise import exercise, exercise_requests  # noqa: F401
from tools.build.lazy import decide as decide_lazy
from tools.build.lazy import write_list as write_lazy_list
from tools.build.model import (check_model, check_policy_has_no_s3, fetch_remote_artifact,
                               leave_out_unserved, served_runtime,
                               model_dir_in_package)
from tools.build.trace import check_results, compare_replay, run_exercise
from tools.build.trim import (OPENMP, RUNTIME_LIB_DIR, _needed, select_files,  # noqa: F401
                              ship_openmp_runtime)
from tools.build.wheels import (download_wheels, drop_pandas_unless_used,  # noqa: F401
                                model_uses_pandas, read_pins, unpack_wheels)


def build(project_dir, stage="prod", wheels_dir=None, keep_sources=False, optimize=2,
          compresslevel=9, direct_upload=False, requested_layout="auto"):
    started = time.perf_counter()
    project_dir = os.path.abspath(project_dir)
    build_dir = os.path.join(project_dir, "build")
    wheels_dir = os.path.abspath(wheels_dir or os.path.join(build_dir, "wheels"))
    view = ChaliceView(project_dir, stage)
    settle_bytecode(project_dir)
    package_path = view.package_filename()
    cache_names = {split: view.cache_filenames(split) for split in (False, True)}
    app_dir = os.path.join(build_dir, "app")
    model_rel = model_dir_in_package(view.environment)
    stage_app(view, app_dir, model_rel)
    card = check_model(app_dir, model_rel)
    log("model: %s %s (%s) sha256 %s… %s"
        % (card.get("name"), card.get("version"), card.get("estimator"), card["sha256"][:12],
           "(artifact in S3)" if str(card.get("artifact", "")).startswith("s3://")
           else "matches its card"))
    environment = dict(view.environment)
    if str(card.get("artifact", "")).startswith("s3://"):
        artifact = fetch_remote_artifact(project_dir, stage, card, build_dir)
        environment["MODEL_CACHE_DIR"] = os.path.dirname(artifact)
    else:
        artifact = os.path.join(app_dir, model_rel, card.get("artifact", "model.joblib"))
        check_policy_has_no_s3(project_dir, stage, card)
    requirements = os.path.join(project_dir, "requirements.txt")
    pins = read_pins(requirements)
    wheels = download_wheels(view, pins, requirements, wheels_dir)
    wheels = drop_pandas_unless_used(wheels, artifact, card, served_runtime(card, environment))
    site_dir = os.path.join(build_dir, "site")
    unpack_wheels(wheels, site_dir)
    left_out = leave_out_unserved(app_dir, model_rel, card, environment)
    trace = run_exercise([app_dir, site_dir], environment, model_rel,
                         os.path.join(build_dir, "trace.json"), cwd=app_dir)
    check_results(trace, "with the untrimmed dependencies")
    log("trace: %d requests answered; %d modules imported, %d files opened"
        % (len(trace["results"]), len(trace["modules"]), len(trace["opened"])))
    lazy, _ = decide_lazy(trace, site_dir, app_dir, environment, model_rel, build_dir)
    if lazy:
        write_lazy_list(app_dir, lazy)
    keep, sources = select_files(site_dir, trace)
    keep = ship_openmp_runtime(site_dir, keep)
    pkg_dir = os.path.join(build_dir, "package")
    assemble(site_dir, keep, sources, app_dir, pkg_dir, keep_sources, optimize)
    zip_tmp = os.path.join(build_dir, "package.zip")
    sizes = write_zip(pkg_dir, zip_tmp, compresslevel)
    check_model(pkg_dir, model_rel, left_out)
    chosen = layout.choose(requested_layout, sizes["zipped"])
    verify_dir = os.path.join(build_dir, "verify")
    _make_writable(verify_dir)
    shutil.rmtree(verify_dir, ignore_errors=True)
    if chosen == "one":
        check_size(sizes, direct_upload, model_rel)
        outputs = [(zip_tmp, sizes)]
        extract_read_only(zip_tmp, verify_dir)
        paths = [verify_dir]
    else:
        check_size(sizes, model_rel=model_rel, split=True)
        function_tmp = os.path.join(build_dir, "function.zip")
        layer_tmp = os.path.join(build_dir, "layer.zip")
        function = write_zip(pkg_dir, function_tmp, compresslevel, select=layout.in_function)
        layer = write_zip(pkg_dir, layer_tmp, compresslevel, prefix=layout.LAYER_PYTHON + "/",
                          select=lambda rel: not layout.in_function(rel))
        log("layout: function + layer (%s): the function zip holds %s; the layer (%s/ on "
            "sys.path as /opt/python) the rest"
            % ("the one zip would be %.2f MiB, over the 50 MiB direct upload" % (
                sizes["zipped"] / MiB) if requested_layout == "auto" else "--layout split",
               ", ".join(sorted(t for t in os.listdir(pkg_dir) if layout.in_function(t))),
               layout.LAYER_PYTHON))
        layout.check_split_size(function, layer, direct_upload)
        os.remove(zip_tmp)
        outputs = [(function_tmp, function), (layer_tmp, layer)]
        task, opt = os.path.join(verify_dir, "task"), os.path.join(verify_dir, "opt")
        extract_read_only(function_tmp, task)
        extract_read_only(layer_tmp, opt)
        paths = [task, os.path.join(opt, layout.LAYER_PYTHON)]
    check_model(paths[0], model_rel, left_out)
    replay = run_exercise(paths, environment, model_rel,
                          os.path.join(build_dir, "replay.json"), cwd=paths[0])
    check_results(replay, "from the unzipped package")
    compare_replay(trace, replay, verify_dir)
    shipped_openmp = os.path.join(paths[0], RUNTIME_LIB_DIR, OPENMP)
    if os.path.join(RUNTIME_LIB_DIR, OPENMP) in keep and shipped_openmp not in replay["mapped"]:
        raise BuildError("the replay did not load the shipped %s/%s" % (RUNTIME_LIB_DIR, OPENMP))
    log("replay: the unzipped package%s, read-only and isolated, answers all %d requests "
        "as the untrimmed dependencies do (import: %.2fs; %d lazy modules never ran)"
        % (" (function as /var/task, layer as /opt)" if chosen == "split" else "",
           len(replay["results"]), replay["import_seconds"],
           len(set(replay["lazy_pending"]) & set(lazy))))
    _make_writable(verify_dir)
    shutil.rmtree(verify_dir)
    split = chosen == "split"
    targets = cache_names[split]
    if view.cache_filenames(split) != targets:
        raise BuildError("the project changed during the build (requirements.txt, app.py, "
                         "chalicelib/, vendor/, or model/ that vendor/model links to: a model "
                         "published meanwhile counts); run the build again")
    deployments = os.path.dirname(package_path)
    os.makedirs(deployments, exist_ok=True)
    for name in os.listdir(deployments):
        full = os.path.join(deployments, name)
        if name.endswith(".zip") and full not in targets:
            os.remove(full)  # stale: Chalice would never pick it again, or worse
    for (built, built_sizes), target in zip(outputs, targets):
        os.replace(built, target)
        built_sizes["path"] = target
    if layout.record(view.config_file, stage, split):
        log("layout: %s automatic_layer for stage %s in %s, so that Chalice ships %s"
            % ("set" if split else "cleared", stage, _rel(view.config_file),
               "the function and its layer" if split else "the one zip"))
    seconds = round(time.perf_counter() - started, 1)
    reuse = ("`chalice package --stage %s OUT/` and `chalice deploy --stage %s` now reuse %s."
             % (stage, stage, "both" if split else "it"))
    for label, built_sizes in zip(("function", "layer") if split else ("package",),
                                  [o[1] for o in outputs]):
        print("%s: %s\n  %.2f MiB zipped, %.2f MiB unzipped, %d files"
              % (label, _rel(built_sizes["path"]), built_sizes["zipped"] / MiB,
                 built_sizes["unzipped"] / MiB, built_sizes["files"]), flush=True)
    print("  built in %.1fs; %s" % (seconds, reuse), flush=True)
    result = dict(outputs[0][1], seconds=seconds, layout=chosen)
    if split:
        result["layer"] = outputs[1][1]
    return result
    return sizes


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tools.build.package",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--project-dir", default=REPO_DIR)
    parser.add_argument("--stage", default="prod")
    parser.add_argument("--wheels-dir", help="wheel cache (default: PROJECT/build/wheels)")
    parser.add_argument("--keep-sources", action="store_true",
                        help="ship the dependencies' .py sources too (default: bytecode only)")
    parser.add_argument("--optimize", type=int, choices=(0, 1, 2), default=2,
                        help="optimization level of the dependencies' bytecode (default 2: "
                        "no docstrings, no asserts)")
    parser.add_argument("--compresslevel", type=int, default=9)
    parser.add_argument("--direct-upload", action="store_true",
                        help="fail above 50 MiB zipped (for `chalice deploy`)")
    parser.add_argument("--layout", choices=layout.LAYOUTS, default="auto",
                        help="one zip, or a function zip + a layer zip (Chalice's "
                        "automatic_layer, set on the stage by the build); default auto: the "
                        "split when the one zip is over the 50 MiB direct upload")
    parser.add_argument("--exercise", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--paths", help=argparse.SUPPRESS)
    parser.add_argument("--model-rel", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.exercise:
        exercise(args.paths.split(os.pathsep), args.model_rel, args.out)
        return 0
    try:
        build(args.project_dir, args.stage, args.wheels_dir,
              keep_sources=args.keep_sources, optimize=args.optimize,
              compresslevel=args.compresslevel, direct_upload=args.direct_upload,
              requested_layout=args.layout)
    except BuildError as exc:
        print("build: error: %s" % exc, file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
