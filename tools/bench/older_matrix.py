"""The older-scikit-learn matrix: for each release and model family, which
runtime serves a model that release pickled, how closely the served answers
agree with that release's own, and how large the Lambda package is.

    .venv/bin/python -m tools.bench.older_matrix [--versions 1.2.2,1.6.1]
        [--families forest,text] [--packages each|per-family|none] [--json FILE]

Per release: its build environment (:mod:`publisher.build_env`, cached), the
fixed-seed models of :mod:`tools.fixtures.older_sklearn` trained and pickled
there with that release's answers, each published here by
``publisher.publish`` (no ``--force``, ``--trust`` or ``ALLOW_VERSION_SKEW``),
then served by the real app (Chalice's test client, ``POST /model`` with
``instances``) and compared with what the release answered:

* **in env**: the largest absolute difference between the graph and the
  release's own ``predict``/``predict_proba`` over the rows of the publish
  check (sample, generated, edge and missing-value rows), measured in the
  build environment (the card's ``onnx.agreement``);
* **served**: the largest difference between the app's answers and the
  release's answers to the fixture's 25 rows (labels must be identical;
  the error is on probabilities, or relative on regression values);
* **package**: the zipped Lambda package (``tools.build.package``, with
  ``--direct-upload``: over 50 MiB fails). ``each`` builds one per model;
  ``per-family`` (the default: a build takes minutes) builds one per family,
  for the newest release, and for the other releases writes that same
  package again with the model's own files in place of the built one's (a
  real zip of what would ship; the build's trace and replay not rerun for it,
  marked ``*``).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO) if REPO not in sys.path else None

import numpy as np  # noqa: E402

from publisher import build_env  # noqa: E402
from tools.build.common import MiB, ZIP_LIMIT  # noqa: E402
from tools.build.project_copy import BUNDLED, copy_project, make_writable  # noqa: E402
from tools.fixtures.older_sklearn import FAMILIES  # noqa: E402

VERSIONS = ("1.1.3", "1.2.2", "1.3.2", "1.4.2", "1.6.1", "1.7.2")
WORK_DIR = os.path.join(REPO, "build", "older-matrix")
WHEELS = os.path.join(REPO, "build", "wheels")


def note(msg):
    print("older-matrix: %s" % msg, file=sys.stderr, flush=True)


def train(version):
    """``(directory of that release's fixtures, python version)``."""
    python, env = build_env.ensure(version, log=note)
    out = os.path.join(WORK_DIR, "sklearn-%s" % version, "fixtures")
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run([python, "-m", "tools.fixtures.older_sklearn", out], cwd=REPO, check=True,
                   capture_output=True, timeout=900)
    return out, env["python"]


def publish_one(models, family, out):
    """The card, or ``{"refused": reason}``."""
    from publisher.publish import PublishError, publish
    try:
        return publish(os.path.join(models, family + ".joblib"), name=family, version="1",
                       out_dir=out,
                       sample=os.path.join(models, family + ".csv"))
    except PublishError as exc:
        return {"refused": str(exc)}


def served_error(out, answers):
    """``(labels identical, largest error)`` of the app's answers to the
    release's rows, served from ``out`` with the app's defaults."""
    from chalice.test import Client
    import app as app_module
    from chalicelib.protocols import service
    env = {"MODEL_DIR": out, "LOG_REQUESTS": "false"}
    saved = app_module.SERVICE
    app_module.SERVICE = service.from_environment(env)
    try:
        with Client(app_module.app) as client:
            rows = [list(r.values()) for r in answers["records"]]
            body = {"instances": rows, "probabilities": "probabilities" in answers}
            response = client.http.post("/model", headers={"Content-Type": "application/json"},
                                        body=json.dumps(body))
            runtime = response.headers.get("X-Model-Runtime")
            got = json.loads(response.body)
    finally:
        app_module.SERVICE = saved
    if response.status_code != 200:
        raise RuntimeError("the app answered %d: %s" % (response.status_code, got))
    expected = answers["predictions"]
    if "probabilities" in answers:
        identical = got["predictions"] == expected
        error = float(np.max(np.abs(np.asarray(got["probabilities"])
                                    - np.asarray(answers["probabilities"]))))
    else:
        want = np.asarray(expected, dtype=float)
        identical = None
        error = float(np.max(np.abs(np.asarray(got["predictions"]) - want)
                             / np.maximum(np.abs(want), 1e-12)))
    return identical, error, runtime


def env_error(card):
    agreement = card["onnx"]["agreement"]
    errors = [v for k, v in agreement.items() if k.endswith("_max_error")]
    return agreement["rows"], max(errors) if errors else 0.0


def build_package(model_dir, dest):
    """The zipped size of the package ``tools.build.package`` builds for the
    model in ``model_dir``."""
    project = copy_project(os.path.join(dest, "project"))
    bundled = os.path.join(project, *BUNDLED)
    shutil.rmtree(bundled)
    shutil.copytree(model_dir, bundled)
    env = dict(os.environ, AWS_DEFAULT_REGION="us-east-1")
    result = subprocess.run([sys.executable, "-m", "tools.build.package", "--project-dir",
                             project, "--stage", "prod", "--wheels-dir", WHEELS,
                             "--direct-upload"], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=1800)
    if result.returncode != 0:
        raise RuntimeError("build failed: %s" % result.stderr.strip().splitlines()[-1:])
    deployments = os.path.join(project, ".chalice", "deployments")
    (built,) = [z for z in os.listdir(deployments) if z.endswith(".zip")]
    kept = os.path.join(dest, "package.zip")
    shutil.move(os.path.join(deployments, built), kept)
    make_writable(project)
    shutil.rmtree(project)
    return kept


def swap_model(package, model_dir, dest):
    """``package`` written again with ``model_dir``'s shipped files in place
    of its model's (same compression); the new zip's path."""
    prefix = "/".join(BUNDLED) + "/"
    out = os.path.join(dest, "package.zip")
    with zipfile.ZipFile(package) as src:
        shipped = {i.filename[len(prefix):] for i in src.infolist()
                   if i.filename.startswith(prefix)}
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as dst:
            for info in src.infolist():
                if info.filename.startswith(prefix):
                    continue
                dst.writestr(info, src.read(info), compress_type=zipfile.ZIP_DEFLATED,
                             compresslevel=9)
            for name in sorted(shipped):
                info = zipfile.ZipInfo(prefix + name, date_time=(1980, 1, 1, 0, 0, 0))
                info.external_attr = 0o644 << 16
                with open(os.path.join(model_dir, name), "rb") as f:
                    dst.writestr(info, f.read(), compress_type=zipfile.ZIP_DEFLATED,
                                 compresslevel=9)
    return out


def run(versions, families, packages):
    rows = []
    built = {}  # family -> package zip built for the newest release
    for version in sorted(versions, key=build_env._key, reverse=True):
        started = time.monotonic()
        models, python = train(version)
        note("scikit-learn %s (Python %s): models trained in %.0f s"
             % (version, python, time.monotonic() - started))
        for family in families:
            with open(os.path.join(models, family + ".json")) as f:
                answers = json.load(f)
            out = os.path.join(WORK_DIR, "sklearn-%s" % version, family)
            shutil.rmtree(out, ignore_errors=True)
            started = time.monotonic()
            card = publish_one(models, family, out)
            row = {"version": version, "python": python, "family": family,
                   "publish_seconds": round(time.monotonic() - started, 1)}
            if "refused" in card:
                row.update(runtime="refused", reason=card["refused"])
                rows.append(row)
                note("%s %s: refused" % (version, family))
                continue
            row["runtime"] = card["runtime"]
            row["rows"], row["env_error"] = env_error(card)
            row["labels_identical"], row["served_error"], row["served_by"] = \
                served_error(out, answers)
            if packages != "none":
                dest = os.path.join(WORK_DIR, "sklearn-%s" % version, family + "-package")
                shutil.rmtree(dest, ignore_errors=True)
                os.makedirs(dest)
                if packages == "each" or family not in built:
                    zip_path = build_package(out, dest)
                    built.setdefault(family, zip_path)
                    row["package_built"] = True
                else:
                    zip_path = swap_model(built[family], out, dest)
                    row["package_built"] = False
                row["package_mib"] = os.path.getsize(zip_path) / MiB
            rows.append(row)
            note("%s %s: %s, %d rows, in env %.2g, served %.2g%s"
                 % (version, family, row["runtime"], row["rows"], row["env_error"],
                    row["served_error"], ", package %.2f MiB" % row["package_mib"]
                    if "package_mib" in row else ""))
    return rows


def table(rows):
    lines = ["| scikit-learn | Python | family | runtime | rows checked in env | max abs error in env "
             "| served: labels, max error (probabilities abs, values rel) | package MiB zipped |",
             "|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (build_env._key(r["version"]),
                                         FAMILIES.index(r["family"]))):
        if r["runtime"] == "refused":
            reason = r["reason"].split(". Either")[0]
            short = reason.rsplit("agrees with scikit-learn %s: " % r["version"], 1)[-1]
            if ". Either" in r["reason"]:
                short += " (choices given: retrain, or --force and ALLOW_VERSION_SKEW)"
            lines.append("| %s | %s | %s | refused: %s | | | | |"
                         % (r["version"], r["python"], r["family"], short.replace("|", "/")))
            continue
        labels = ("values" if r["labels_identical"] is None
                  else "identical" if r["labels_identical"] else "DIFFER")
        package = ("%.2f%s" % (r["package_mib"], "" if r["package_built"] else "*")
                   if "package_mib" in r else "not built")
        lines.append("| %s | %s | %s | %s | %d | %.1e | %s, %.1e | %s |"
                     % (r["version"], r["python"], r["family"], r["runtime"], r["rows"],
                        r["env_error"], labels, r["served_error"], package))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tools.bench.older_matrix",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--versions", default=",".join(VERSIONS))
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--packages", choices=("each", "per-family", "none"),
                        default="per-family")
    parser.add_argument("--json", help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    versions = [v for v in args.versions.split(",") if v]
    families = [f for f in args.families.split(",") if f]
    unknown = set(families) - set(FAMILIES)
    if unknown:
        parser.error("unknown families: %s (known: %s)" % (", ".join(sorted(unknown)),
                                                           ", ".join(FAMILIES)))
    os.makedirs(WORK_DIR, exist_ok=True)
    os.environ.pop("ALLOW_VERSION_SKEW", None)
    os.environ.pop("TRUST_MODEL_PICKLE", None)
    rows = run(versions, families, args.packages)
    print(table(rows))
    if args.packages == "per-family":
        print("\n* the package built for the newest release's model of that family, written "
              "again with this model's files in its place (same compression); its build's "
              "trace and replay were not rerun for it. --packages each builds every one.")
    print("Runtime, rows and error in env: from the card. Served: the app (Chalice test "
          "client) answering the release's %s rows, vs that release's own answers. Limit: "
          "%d MiB zipped (direct upload)." % ("25", ZIP_LIMIT // MiB))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    bad = [r for r in rows if r["runtime"] not in ("refused",) and
           (r["labels_identical"] is False or r.get("package_mib", 0) * MiB > ZIP_LIMIT)]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
