"""Publish every family of the model battery and print how each is served.

    python -m tools.bench.battery [--only NAME,NAME] [--keep DIR]

Each family of ``tools/fixtures/model_battery.py`` is fitted, dumped with
joblib and published with ``publisher.publish`` (its notebook rows as
``--sample``) into a temporary directory. The table says which runtime
serves it, why not ONNX Runtime where it is scikit-learn, and the agreement
the card records: the largest per-value error of the graph against
scikit-learn, ``|onnx - sklearn|`` (``err``) and the tolerance it had to
meet, ``rtol * |sklearn| + atol`` (both stated). Package sizes and cold
starts are measured by ``make bench`` (``tools/bench.py``), not here.
"""
import argparse
import os
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


def agreement_text(card):
    agreement = (card.get("onnx") or {}).get("agreement")
    if not agreement:
        return ""
    parts = []
    for key in ("predictions", "probabilities", "values"):
        worst = agreement.get(key + "_max_error")
        if worst is not None:
            parts.append("%s err %.2g" % (key[:5], worst))
    if agreement.get("predictions_identical"):
        parts.append("labels identical")
    parts.append("rtol %g atol %g (%s, %d rows)" % (agreement.get("rtol", float("nan")),
                                                   agreement.get("atol", float("nan")),
                                                   agreement.get("input", "?"),
                                                   agreement.get("rows", 0)))
    return "; ".join(parts)


def rows_of(names, root):
    for name in names:
        started = time.perf_counter()
        model, notebook, card, where = publish_family(name, root)
        seconds = time.perf_counter() - started
        if card is None:
            yield name, "refused", where, "", seconds
            continue
        reason = "" if card["runtime"] == "onnxruntime" else card["onnx"].get("not_used", "")
        yield name, card["runtime"], reason, agreement_text(card), seconds


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tools.bench.battery",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="comma-separated family names")
    parser.add_argument("--keep", help="publish into this directory and keep it")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",")] if args.only else list(FAMILIES)
    unknown = [n for n in names if n not in FAMILIES]
    if unknown:
        parser.error("unknown families: %s (known: %s)" % (", ".join(unknown),
                                                           ", ".join(FAMILIES)))
    root = args.keep or tempfile.mkdtemp(prefix="battery-")
    os.makedirs(root, exist_ok=True)
    counts = {}
    try:
        print("| family | runtime | why not ONNX | agreement | publish s |")
        print("|---|---|---|---|---|")
        for name, runtime, reason, agreement, seconds in rows_of(names, root):
            counts[runtime] = counts.get(runtime, 0) + 1
            print("| %s | %s | %s | %s | %.1f |" % (name, runtime, reason.replace("|", "/")[:240],
                                                     agreement, seconds), flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print("\n%d of %d families served by ONNX Runtime (%s)" % (
        counts.get("onnxruntime", 0), len(names),
        ", ".join("%s %d" % item for item in sorted(counts.items()))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
