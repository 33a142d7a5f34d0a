"""Lazy imports, decided per build from the trace.

The trace imports the app and answers every request with eager imports. The
Python modules it imported from the dependencies and the standard library
are the candidates: the build runs
the same requests again (isolated, untrimmed dependencies) with *every*
candidate lazy (``chalicelib.ops.lazy_imports``: a module's code runs on the
first read of one of its attributes). The modules still not run at the end
are the ones no request path needed: the app's import, the model's load,
``predict``/``predict_proba`` and every error path went without them. That
list ships as ``chalicelib/_lazy_modules.json``, which ``app.py`` installs
first thing; the replay then proves the package answers as the eager trace
did with exactly that list lazy.

Nothing is decided by hand, and no third-party file is edited. Extension
modules are never lazy (their C init runs when they are created), and a
module that registers something at import (a pickle reducer, a config)
stays eager whenever a request path reads anything from it, because that
read is what the trace sees. If the all-lazy run answers any request
differently from the eager trace, the build ships no list (every import
eager) and says why.
"""
import json
import os
import sysconfig

from tools.build.common import BuildError, log, warn
from tools.build.trace import answer_differences, run_exercise

#: Where the list ships, relative to the package root (read by
#: chalicelib/ops/lazy_imports.py, next to it).
LIST_PATH = os.path.join("chalicelib", "_lazy_modules.json")


def candidates(site_dir, trace):
    """The modules the trace imported from Python source, of the
    dependencies (the trace runs on the unpacked wheels, where every module
    still has its ``.py``) and of the standard library (Lambda's runtime has
    the same Python 3.12; what its bootstrap imported before ``app`` is
    eager there anyway); extension modules are not candidates, nor the
    app's own files."""
    prefixes = (os.path.abspath(site_dir) + os.sep,
                os.path.realpath(sysconfig.get_paths()["stdlib"]) + os.sep)
    return sorted(name for name, path in trace["modules"]
                  if path and path.endswith(".py")
                  and os.path.realpath(path).startswith(prefixes)
                  and "site-packages" not in path.split(os.sep))


def decide(trace, site_dir, app_dir, environment, model_rel, build_dir, rounds=3):
    """Run the requests with every candidate lazy; return (the modules no
    request ran, the lazy run's report), or ([], report) when no lazy run
    answered as ``trace`` did.

    Running a module later than its import changes the order in which a
    package's modules run; a package whose circular imports rely on the
    eager order then fails (pandas: ``cannot import name ... from
    pandas.core.nanops``). The modules whose code raised are recorded, and
    their top-level packages stay eager in the next round."""
    names = candidates(site_dir, trace)
    eager_tops = set()
    for attempt in range(1, rounds + 1):
        names = [n for n in names if n.split(".", 1)[0] not in eager_tops]
        candidates_file = os.path.join(build_dir, "lazy-candidates.json")
        with open(candidates_file, "w") as f:
            json.dump({"modules": names}, f)
        report, problem = _lazy_run(trace, app_dir, site_dir, environment, model_rel,
                                    build_dir, candidates_file)
        if problem is None:
            break
        failed_tops = {n.split(".", 1)[0] for n in (report or {}).get("lazy_failed", ())}
        if not failed_tops or attempt == rounds:
            warn("lazy imports: off (every import eager): " + problem)
            return [], report
        log("lazy imports: %s stay%s eager (%s failed when run out of the eager order)"
            % (", ".join(sorted(failed_tops)), "s" if len(failed_tops) == 1 else "",
               ", ".join(report["lazy_failed"][:3])))
        eager_tops |= failed_tops
    pending = sorted(set(report["lazy_pending"]) & set(names))
    log("lazy imports: %d of the %d modules the app imports (dependencies, standard "
        "library) are never run by "
        "any request (import %.2fs eager, %.2fs with every candidate lazy)"
        % (len(pending), len(names), trace["import_seconds"], report["import_seconds"]))
    return pending, report


def _lazy_run(trace, app_dir, site_dir, environment, model_rel, build_dir, candidates_file):
    """(report, None) when every answer equals the trace's, else (report or
    None, what went wrong)."""
    try:
        report = run_exercise([app_dir, site_dir], environment, model_rel,
                              os.path.join(build_dir, "lazy-trace.json"), cwd=app_dir,
                              lazy_file=candidates_file)
    except BuildError as exc:
        return None, str(exc)[:1000]
    diffs = answer_differences(trace, report)
    if diffs:
        return report, ("with the dependencies lazy the app answered differently: "
                        + "; ".join(diffs[:3])[:1000])
    return report, None


def write_list(app_dir, modules):
    """Ship the list in the staged app files (not in the project's
    chalicelib/: Chalice's cache name hashes that)."""
    path = os.path.join(app_dir, LIST_PATH)
    with open(path, "w") as f:
        json.dump({"modules": modules,
                   "why": "imported by the app but run by no request path in the build's "
                          "trace (tools/build/lazy.py); chalicelib/ops/lazy_imports.py runs each "
                          "on first use"}, f, indent=0, sort_keys=True)
        f.write("\n")
    return path
