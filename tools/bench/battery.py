"""Publish every family of the model battery, build its real package, and
print how each is served, how closely, how big and how fast it starts.

    MODEL_LOAD_TIMEOUT_S=300 .venv/bin/python -m tools.bench.battery \
        [--only NAME,NAME] [--packages N] [--rounds 3] [--json build/battery.json]

Each family of ``tools/fixtures/model_battery.py`` is fitted, dumped with
joblib and published with ``publisher.publish`` (its notebook rows as
``--sample``) into a temporary directory. The table says, per family:

* **runtime**: the one the card names (ONNX Runtime when a graph agrees);
* **why not ONNX**: the card's reason, where scikit-learn serves it;
* **agreement**: the largest per-value error of the graph against
  scikit-learn over the validation rows, ``|onnx - sklearn|``, and the
  tolerance each value had to meet, ``rtol * |sklearn| + atol`` (both on the
  card); labels identical for a classifier;
* **package MiB**: the zip(s) of the real build of a project serving that
  model (``tools.build.package``: one zip, or function + layer zips, marked
  ``split``, when one would be over the 50 MiB direct upload);
* **cold start**: that package's cold start (a fresh isolated interpreter,
  one ``POST /model`` of the notebook's row, on the card's runtime) against
  its own scikit-learn floor (a fresh interpreter importing scikit-learn and
  joblib, loading the pickle, predicting the same row), side by side,
  ``--rounds`` rounds after a discarded one: medians and the paired ratio
  (``tools/bench/battery_packages.py``, with ``tools.bench``'s processes).

``--packages N`` builds and times only the first N families (0: none); the
output says which were. ``--report FILE`` prints the table of a ``--json``
file again (or of an unfinished run's), measuring nothing. Packages are cached in ``build/battery/``; a rerun
rebuilds only what changed. Everything measured goes to ``--json``.
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import warnings

import joblib

from publisher.publish import PublishError, publish
from tools.fixtures.model_battery import FAMILIES


def publish_family(name, root):
    """``(estimator, notebook rows, card, model dir)`` of family ``name``
    published under ``root``; the card is None and the reason a string when
    publish refuses it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, notebook = FAMILIES[name]()
    artifact = os.path.join(root, name + ".joblib")
    joblib.dump(model, artifact)
    model_dir = os.path.join(root, name)
    sample = notebook if hasattr(notebook, "columns") else None
    try:
        card = publish(artifact, name=name.replace("_", "-"), version="1.0.0",
                       out_dir=model_dir, sample=sample)
    except PublishError as exc:
        return model, notebook, None, str(exc)
    return model, notebook, card, model_dir


def agreement_cell(card):
    """The table's agreement: the largest error of each kind against the
    card's rtol and atol."""
    agreement = (card.get("onnx") or {}).get("agreement")
    if not agreement:
        return ""
    parts = ["%s %.2g" % (key, agreement[key + "_max_error"])
             for key in ("values", "probabilities")
             if agreement.get(key + "_max_error") is not None]
    if agreement.get("predictions_identical"):
        parts.append("labels identical")
    return "%s (rtol %g, atol %g)" % (", ".join(parts), agreement["rtol"], agreement["atol"])


def why_cell(card, limit=160):
    if card["runtime"] == "onnxruntime":
        return ""
    reason = card["onnx"].get("not_used", "").split("; ")[0]
    return reason if len(reason) <= limit else reason[:limit - 1] + "…"


def package_cell(pkg):
    if not pkg:
        return "not built"
    sizes = {z["role"]: z["zipped"] / MIB for z in pkg["zips"]}
    if pkg["layout"] == "split":
        return "%.2f + %.2f layer (split)" % (sizes["function"], sizes["layer"])
    return "%.2f" % sizes["package"]


def cold_cell(cold):
    if not cold:
        return "not measured"
    return "%.2f (%.2f s / %.2f s)" % (cold["ratio_median"], cold["package_median_s"],
                                        cold["floor_median_s"])


MIB = 1024.0 * 1024.0


def measure(name, root, build_package, rounds, digest):
    """One family's row: published, and with ``build_package`` built and
    started cold against its floor."""
    from tools.bench import battery_packages
    started = time.perf_counter()
    model, notebook, card, where = publish_family(name, root)
    row = {"family": name, "publish_s": round(time.perf_counter() - started, 1)}
    if card is None:
        row.update(runtime="refused", why_not_onnx=where)
        return row
    row.update(runtime=card["runtime"], why_not_onnx=(card["onnx"].get("not_used", "")
                                                      if card["runtime"] != "onnxruntime"
                                                      else ""),
               agreement=(card.get("onnx") or {}).get("agreement"), card_cell=agreement_cell(card),
               why_cell=why_cell(card))
    if build_package:
        pkg = battery_packages.build(name, where, card, digest)
        row["package"] = {k: pkg[k] for k in ("layout", "zips", "build_seconds", "key")}
        row["package"]["served_runtime"] = pkg["runtime"]
        row["package"]["zipped_mib_total"] = round(sum(z["zipped"] for z in pkg["zips"]) / MIB, 2)
        row["cold_start"] = battery_packages.cold_start(
            name, os.path.join(root, name + ".joblib"), notebook, pkg, rounds)
    return row


def markdown(rows):
    lines = ["| family | runtime | why not ONNX | agreement (max error; card's tolerance) "
             "| package MiB (zipped) | cold start ratio (package / floor) |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        lines.append("| %s | %s | %s | %s | %s | %s |" % (
            row["family"], row["runtime"],
            row.get("why_cell", row.get("why_not_onnx", "")).replace("|", "/"),
            row.get("card_cell", ""), package_cell(row.get("package")),
            cold_cell(row.get("cold_start"))))
    return "\n".join(lines)


def summary(rows):
    counts = {}
    for row in rows:
        counts[row["runtime"]] = counts.get(row["runtime"], 0) + 1
    onnx = counts.get("onnxruntime", 0)
    lines = ["%d of %d families served by ONNX Runtime (%.1f%%; %s)" % (
        onnx, len(rows), 100.0 * onnx / max(len(rows), 1),
        ", ".join("%s %d" % item for item in sorted(counts.items())))]
    built = [r for r in rows if r.get("package")]
    if built:
        biggest = max(max(z["zipped"] for z in r["package"]["zips"]) for r in built) / MIB
        split = [r["family"] for r in built if r["package"]["layout"] == "split"]
        ratios = sorted(r["cold_start"]["ratio_median"] for r in built)
        lines.append("packages built for %d of %d families%s; largest zip %.1f MiB (limit 50); "
                     "split into function + layer: %s" % (
                         len(built), len(rows),
                         "" if len(built) == len(rows) else " (%s)" % ", ".join(
                             r["family"] for r in built),
                         biggest, ", ".join(split) or "none"))
        lines.append("cold start ratio to the scikit-learn floor: median %.2f, range %.2f-%.2f"
                     % (ratios[len(ratios) // 2], ratios[0], ratios[-1]))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tools.bench.battery",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="comma-separated family names")
    parser.add_argument("--keep", help="publish into this directory and keep it")
    parser.add_argument("--packages", type=int, default=None, metavar="N",
                        help="build and time the packages of the first N families only "
                        "(default: all; 0: none)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="cold-start rounds per family, after a discarded one (default 3)")
    parser.add_argument("--json", default=os.path.join("build", "battery.json"),
                        help="where the figures go (default build/battery.json)")
    parser.add_argument("--report", metavar="JSON",
                        help="print the table of figures measured before (a --json file), "
                        "measuring nothing")
    args = parser.parse_args(argv)
    if args.report:
        with open(args.report) as f:
            print_report(json.load(f), args.report)
        return 0
    names = [n.strip() for n in args.only.split(",")] if args.only else list(FAMILIES)
    unknown = [n for n in names if n not in FAMILIES]
    if unknown:
        parser.error("unknown families: %s (known: %s)" % (", ".join(unknown),
                                                           ", ".join(FAMILIES)))
    n_packages = len(names) if args.packages is None else max(args.packages, 0)
    root = args.keep or tempfile.mkdtemp(prefix="battery-")
    os.makedirs(root, exist_ok=True)
    from tools.bench.packages import sources_digest
    digest = sources_digest() if n_packages else None
    figures = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                           "python": platform.python_version(),
                           "load_average_at_start": list(os.getloadavg())},
               "command": "MODEL_LOAD_TIMEOUT_S=300 .venv/bin/python -m tools.bench.battery"
                          + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip(),
               "rounds": args.rounds, "families": []}
    started = time.perf_counter()
    try:
        for i, name in enumerate(names):
            row = measure(name, root, i < n_packages and True, args.rounds, digest)
            figures["families"].append(row)
            print("battery: %s: %s%s" % (name, row["runtime"], "; %s; cold start %s" % (
                package_cell(row.get("package")), cold_cell(row.get("cold_start")))
                if row.get("package") else ""), file=sys.stderr, flush=True)
            _write(args.json, figures)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    figures["seconds"] = round(time.perf_counter() - started, 1)
    figures["summary"] = summary(figures["families"])
    _write(args.json, figures)
    print_report(figures, args.json)
    return 0


def print_report(figures, path):
    print("Measured %s on %s (%d CPUs, load average %s at the start); command: %s\n"
          % (figures["date"], figures["machine"]["platform"], figures["machine"]["cpus"],
             " ".join("%.1f" % v for v in figures["machine"]["load_average_at_start"]),
             figures["command"]))
    print(markdown(figures["families"]))
    print("\n" + summary(figures["families"]))
    if "seconds" not in figures:
        print("(an unfinished run: %d families measured)" % len(figures["families"]))
    print("figures in %s" % path)


def _write(path, figures):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(figures, f, indent=1)
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    sys.exit(main())
