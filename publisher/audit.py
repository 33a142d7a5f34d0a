"""The publish-time audit: inspect an artifact in a child process.

``publisher.publish`` never unpickles an unaudited artifact in its own process.
:func:`audit_artifact` runs ``python -m publisher.audit PATH`` with resource
limits (address space, CPU seconds, no file writes) and reads back a JSON
report: the globals the stream names (and which are outside the narrow core
of classes), and what :mod:`chalicelib.safeload.model_audit` finds in the loaded
model (file inputs, callables, function arguments, object arrays). The
child loads with the app's restricted, validating loader, so a refusal there
is a refusal here. A child killed by a limit or a signal is a refusal too.

The report is stored on the card under ``"audit"``.
"""
import json
import os
import resource
import subprocess
import sys

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIMIT_AS_BYTES = 4 * 1024 ** 3      # importing the scientific stack reserves ~1.5 GiB
LIMIT_CPU_S = 60
TIMEOUT_S = 120


class AuditRefused(Exception):
    """The artifact failed the audit; the message says why."""


def _limits():
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT_AS_BYTES, LIMIT_AS_BYTES))
    resource.setrlimit(resource.RLIMIT_CPU, (LIMIT_CPU_S, LIMIT_CPU_S))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def run_child(path, code_dir=None, code_names=()):
    """The child's report (a dict), or AuditRefused if the child died."""
    code = [code_dir, *code_names] if code_names else []
    try:
        result = subprocess.run([sys.executable, "-m", "publisher.audit", os.path.abspath(path),
                                 *code],
                                cwd=PROJECT_DIR, capture_output=True, text=True,
                                timeout=TIMEOUT_S, preexec_fn=_limits,
                                env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
    except subprocess.TimeoutExpired:
        raise AuditRefused("audit: inspecting the artifact took over %d s" % TIMEOUT_S) from None
    if result.returncode != 0:
        how = ("killed by signal %d" % -result.returncode if result.returncode < 0
               else "exit code %d" % result.returncode)
        tail = (result.stderr.strip().splitlines() or ["?"])[-1][:200]
        raise AuditRefused("audit: the artifact crashed the inspecting process (%s, within "
                           "limits of %d GiB and %d s CPU): %s"
                           % (how, LIMIT_AS_BYTES >> 30, LIMIT_CPU_S, tail))
    return json.loads(result.stdout.strip().splitlines()[-1])


def audit_artifact(path, trust=False, code_dir=None, code_names=()):
    """The audit report for ``path``; AuditRefused unless it passes or
    ``trust`` is set (then the report says it was trusted). ``code_dir`` and
    ``code_names``: the user's modules shipped with ``--code``, allowed in
    the child as the app allows them."""
    report = run_child(path, code_dir, code_names)
    report["trusted"] = bool(trust)
    report["limits"] = {"address_space_gib": LIMIT_AS_BYTES >> 30, "cpu_s": LIMIT_CPU_S,
                        "file_writes": "none"}
    reason = report.get("error")
    if not reason and report.get("refused"):
        from chalicelib.safeload.model_audit import refusal
        reason = refusal(report)
    if reason and not trust:
        raise AuditRefused("%s (pass --trust to publish it anyway; the app then needs "
                           "TRUST_MODEL_PICKLE=true)" % reason)
    return report


def _child(path, code_dir=None, code_names=()):
    """Load with the app's loader, recording every global the stream names."""
    from chalicelib.safeload import boosting  # noqa: F401  (its unpickler rule, as the app's loader has)
    from chalicelib.safeload import model_audit
    from chalicelib.safeload import safe_pickle
    from chalicelib.safeload import user_code
    from chalicelib.http.errors import ModelLoadError
    named = []
    resolve = safe_pickle.resolve

    def recording(module, name):
        named.append("%s.%s" % (module, name) if isinstance(module, str) else repr(module))
        return resolve(module, name)

    safe_pickle.resolve = recording
    report = {"globals": [], "outside_core": [], "findings": [], "object_arrays": 0,
              "refused": 0}
    modules = {}
    try:
        from chalicelib.safeload import validate_native
        modules = user_code.load_modules(code_dir, code_names) if code_names else {}
        _tried_first(path, code_dir, modules)
        with user_code.allowing(code_dir, modules):
            estimator = safe_pickle.load(path)
            validate_native.validate(estimator)
    except ModelLoadError as exc:
        report["error"] = str(exc)
        estimator = None
    except Exception as exc:
        report["error"] = "artifact does not load: %s: %s" % (type(exc).__name__, exc)
        estimator = None
    finally:
        safe_pickle.resolve = resolve
    report["globals"] = sorted(set(named))
    report["outside_core"] = sorted(
        g for g in set(named) if g in _resolved_non_classes(safe_pickle))
    if estimator is not None:
        with user_code.allowing(code_dir, modules):
            report.update(model_audit.inspect_model(estimator))
    return report


def _tried_first(path, code_dir, modules):
    """The app's trial load (a forked child within the load's memory and time
    budgets, :mod:`chalicelib.safeload.trial_load`): what the app refuses at
    start for a bomb in C or after unpickling, publish refuses for the same
    reason, before this process spends the work."""
    from chalicelib.safeload import loading, model_audit, safe_pickle, trial_load, user_code
    from chalicelib.safeload import validate_native
    if not trial_load.enabled():
        return
    loading.resolve_ahead(path)  # the stack's imports once, here, as the app does

    def load():
        with user_code.allowing(code_dir, modules):
            estimator = safe_pickle.load(path)
            validate_native.validate(estimator)
            model_audit.inspect_model(estimator)
    trial_load.trial(load, path)


def _resolved_non_classes(safe_pickle):
    """Globals outside the narrow core: functions (not classes, not the
    reconstruction helpers pickle itself calls)."""
    return {"%s.%s" % key for key, obj in safe_pickle._resolved.items()
            if not isinstance(obj, type) and key not in safe_pickle.RECONSTRUCTORS
            and not key[1].startswith("__pyx_unpickle_")}


if __name__ == "__main__":
    print(json.dumps(_child(sys.argv[1], *(sys.argv[2:3] or [None]), sys.argv[3:])))
