"""The report of ``tools.bench``: figures on paper (Lambda memory, cost,
capacity), one line per figure for each model and serving path, and the
performance targets with PASS/MISS."""
import math
import statistics

from tools.bench.models import say
from tools.bench.static import ESTIMATE_MB, FULL_CORE_MB, lambda_estimate

MiB = 1024 * 1024
ZIP_LIMIT_MIB = 50          # Lambda: direct upload
UNZIPPED_LIMIT_MIB = 250    # Lambda: function + layers, unzipped
TARGET_ZIP_MIB = 30
HEADROOM = 1.30
COMMON_MEMORY_MB = (128, 256, 512, 1024, 1536, 2048, 3008, 4096, 6144, 8192, 10240)
# AWS public pricing, us-east-1, as listed 2026-11 (not fetched live).
PRICE_DATE = "AWS public pricing, us-east-1, as listed 2026-11; not fetched live"
LAMBDA_GB_S = 0.0000166667  # x86, per GB-second (billed per 1 ms)
LAMBDA_PER_M = 0.20         # per 1M requests
APIGW_REST_PER_M = 3.50     # REST API, per 1M requests, first 333M


def summary(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values)}


# --------------------------------------------------------------------------
# Paper figures.


def lambda_memory(rss_mib):
    need = max(128, int(math.ceil(rss_mib * HEADROOM)))
    if need > 10240:
        return None, None
    common = next(m for m in COMMON_MEMORY_MB if m >= need)
    return need, common


def cost(duration_ms, memory_mb):
    billed_ms = max(1, math.ceil(duration_ms))
    compute = 1e6 * (memory_mb / 1024.0) * (billed_ms / 1000.0) * LAMBDA_GB_S
    return {"memory_mb": memory_mb, "billed_ms": billed_ms, "lambda_compute": compute,
            "lambda_requests": LAMBDA_PER_M, "api_gateway": APIGW_REST_PER_M,
            "total": compute + LAMBDA_PER_M + APIGW_REST_PER_M}


# --------------------------------------------------------------------------
# Report.


def ms(seconds):
    return "%.0f ms" % (seconds * 1000)


def us(ns):
    return "%.1f us" % (ns / 1000.0) if ns < 1e7 else "%.2f ms" % (ns / 1e6)


PATH_LABEL = {"onnxruntime": "ONNX path", "scikit-learn": "scikit-learn path"}
VARIANT_LABEL = {"floor": "floor (venv, warm .pyc)", "naive": "naive chalice package"}
ONNX, SKLEARN = "onnxruntime", "scikit-learn"


def variant_label(name, pkgs):
    if name in VARIANT_LABEL:
        return VARIANT_LABEL[name]
    if name == "old":
        return "old build (%s)" % pkgs["old"]["built_from"][:12]
    return "new, %s" % PATH_LABEL.get(pkgs[name]["runtime"], pkgs[name]["runtime"])


def report_model(model, pkgs, paths, cold, bds, imports, sizes, warms):
    """Print one model's figures; return them (with per-path figures under
    ``paths`` for the targets)."""
    fig = {"model": model.key, "title": model.title, "model_sha256": model.sha256,
           "input": model.input_kind, "warm_target": model.warm_target,
           "batch_target": model.batch_target, "paths": {}}
    say("== %s (sha256 %s...)" % (model.title, model.sha256[:12]))
    fig["cold_start_s"] = c = {k: summary([r["seconds"] for r in v]) for k, v in cold.items()}
    floor = c["floor"]["median"]
    rss = {k: max(r["rss_kib"] for r in v) / 1024.0 for k, v in cold.items()}
    fig["peak_rss_mib"] = rss
    for name, runs in cold.items():
        s = c[name]
        text = "cold start   %-34s median %6s (min %s, max %s, n=%d)" % (
            variant_label(name, pkgs), ms(s["median"]), ms(s["min"]), ms(s["max"]), s["n"])
        if name != "floor":
            paired = summary([r["seconds"] / f["seconds"] for r, f in zip(runs, cold["floor"])])
            fig.setdefault("cold_start_ratio_floor", {})[name] = s["median"] / floor
            fig.setdefault("cold_start_ratio_floor_paired", {})[name] = paired
            text += " = %.2fx floor (paired %.2fx)" % (s["median"] / floor, paired["median"])
            if name != "old" and "old" in c:
                text += ", %.2fx old" % (s["median"] / c["old"]["median"])
        say(text)
        lazy = runs[0].get("lazy")
        say("cold start   %-34s peak RSS %.1f MiB; imported: %s%s"
            % ("", rss[name], ", ".join(runs[0]["heavy"]) or "none of " + "/".join(
                ("sklearn", "scipy", "onnxruntime", "pandas", "joblib")),
               "; left lazy (code not run): " + ", ".join(lazy) if lazy else ""))
    say("lambda init  estimate = single-core cold start x 1,769/memory below 1,769 MB (Lambda's "
        "CPU share); an estimate: CPU-bound work scales, file I/O need not; the runtime's own "
        "bootstrap is not in it")
    fig["lambda_init_estimate_s"] = {}
    for name in cold:
        if name == "floor":
            continue
        est = {mb: lambda_estimate(c[name]["median"], mb) for mb in ESTIMATE_MB}
        fig["lambda_init_estimate_s"][name] = est
        say("lambda init  %-34s %s" % (variant_label(name, pkgs), ", ".join(
            "%d MB (%.2f vCPU) ~%.2f s" % (mb, min(1.0, mb / float(FULL_CORE_MB)), est[mb])
            for mb in ESTIMATE_MB)))
    for path, pkg in paths.items():
        label = PATH_LABEL.get(path, path)
        report_breakdown(label, bds[path])
        report_imports(label, imports[path])
    if "old" in imports:
        report_imports("old build", imports["old"], top=5)
    fig["imports"] = imports
    fig["init_breakdown_s"] = bds
    report_sizes(pkgs, sizes, fig)
    for path, pkg in paths.items():
        v = pkg["variant"]
        pf = report_warm(model, PATH_LABEL.get(path, path), warms[path])
        pf.update(variant=v, cold_ratio=fig["cold_start_ratio_floor"][v],
                  cold_ratio_paired=fig["cold_start_ratio_floor_paired"][v]["median"],
                  rss_mib=rss[v], zipped=pkg["zipped"], heavy=cold[v][0]["heavy"])
        fig["paths"][path] = pf
    first = next(iter(paths))
    report_paper(paths[first], rss[paths[first]["variant"]], warms[first],
                 PATH_LABEL.get(first, first), fig)
    say()
    return fig


def report_breakdown(label, bd):
    steps = bd["steps"]
    say("init         %s, instrumented run (median; total %s; %d modules before the app's, "
        "%d more by the app and its model)" % (label, ms(steps["total"]), bd["modules_imports"],
                                               bd["modules_app"]))
    for name, seconds in steps.items():
        if name == "total":
            continue
        extra = ""
        if name.startswith("ServedModel.load"):
            extra = "  (%d modules imported by loading the model)" % bd["modules_model_load"]
        say("init           %-52s %7s  %4.0f%%%s"
            % (name, ms(seconds), 100 * seconds / steps["total"], extra))


def report_imports(label, imp, top=8):
    say("imports      %s: -X importtime, %d modules, %s in imports (importtime's own overhead "
        "included)" % (label, imp["modules"], ms(imp["total_us"] / 1e6)))
    say("imports        self per top-level package: " + ", ".join(
        "%s %s" % (n, ms(v / 1e6)) for n, v in imp["by_package"][:top + 2]))
    say("imports        top self: " + ", ".join(
        "%s %s" % (n, ms(v / 1e6)) for n, v in imp["top_self"][:top]))
    say("imports        top cumulative: " + ", ".join(
        "%s %s" % (n, ms(v / 1e6)) for n, v in imp["top_cumulative"][:top]))


def report_sizes(pkgs, sizes, fig):
    order = [v for v in ("old", "new", "sklearn", "naive") if v in sizes]
    fig["package"] = {v: {k: pkgs[v][k] for k in ("zipped", "unzipped", "files", "pyc",
                                                   "zip_sha256")} for v in order}
    fig["zip_per_package"] = {v: sizes[v] for v in order}
    for v in order:
        meta = pkgs[v]
        say("package      %-34s %6.2f MiB zipped (limit %d: %s), %6.2f MiB unzipped, %d files; "
            "room for the model under the 50 MiB direct upload: %.2f MiB (the model takes %.3f)"
            % (variant_label(v, pkgs), meta["zipped"] / MiB, ZIP_LIMIT_MIB,
               "ok" if meta["zipped"] <= ZIP_LIMIT_MIB * MiB else "OVER",
               meta["unzipped"] / MiB, meta["files"], sizes[v]["room_for_model"] / MiB,
               sizes[v]["model"] / MiB))
        for warning in meta.get("build_warnings", []):
            say("package        its build said: %s" % warning)
    names = []
    for v in order:
        for name, size in sizes[v]["packages"]:
            if name not in names and size >= 64 * 1024:
                names.append(name)
    say("package      zipped MiB per top-level package (>= 64 KiB somewhere): %s"
        % " | ".join(variant_label(v, pkgs) for v in order))
    for name in names:
        cells = [dict(sizes[v]["packages"]).get(name) for v in order]
        say("package        %-16s %s" % (name, " | ".join(
            "%6.2f" % (x / MiB) if x else "     -" for x in cells)))
    rest = [sum(s for n, s in sizes[v]["packages"] if n not in names) for v in order]
    say("package        %-16s %s" % ("(the rest)", " | ".join("%6.2f" % (x / MiB) for x in rest)))


def report_warm(model, label, warm_out):
    w = warm_out["warm"]
    h, p = w["handler_ns"], w["predict_ns"]
    dataframe = model.input_kind == "dataframe"
    pf = {"warm": w, "warm_ratio_p50": h["p50"] / p["p50"],
          "warm_cpu_ratio_p50": w["cpu_p50_ns"]["handler"] / w["cpu_p50_ns"]["predict"],
          "bare_predict": warm_out.get("bare", "estimator.predict")}
    say("warm         %s: handler app.app() 1 row p50 %s p99 %s; bare predict (%s%s) p50 %s "
        "p99 %s; p50 ratio %.2fx, CPU time %.2fx (n=%d each, blocks of %d)"
        % (label, us(h["p50"]), us(h["p99"]), pf["bare_predict"],
           "" if not dataframe else " on 1-row column arrays"
           if pf["bare_predict"].startswith("onnxruntime") else " on a 1-row DataFrame",
           us(p["p50"]), us(p["p99"]),
           pf["warm_ratio_p50"], pf["warm_cpu_ratio_p50"], w["n"], w["block"]))
    stages = dict(warm_out["single_stages"])
    pf["single_stages_ns"] = warm_out["single_stages"]
    overhead = h["p50"] - p["p50"]
    pf["overhead_ns"] = overhead
    pf["limits_ns"] = limits = overhead_parts(stages)
    say("warm         %s: handler overhead over bare predict at p50 %s; where (stage medians): %s"
        % (label, us(overhead), ", ".join("%s %s" % (k, us(v)) for k, v in limits)))
    say("warm stages  " + ", ".join("%s %s" % (n.strip(), us(v))
                                     for n, v in warm_out["single_stages"]))
    b = warm_out["batch"]
    bh, bf = b["handler_ns"]["p50"], b["floor_ns"]["p50"]
    pf.update(batch=b, batch_ratio=bh / bf,
              batch_cpu_ratio=b["handler_ns"]["cpu_p50"] / b["floor_ns"]["cpu_p50"])
    floor_name = "floor (%s)" % b["floor_ns"]["floor"] if dataframe else "stdlib floor"
    say("batch        %s: %d rows/request: handler %s = %.0f rows/s; %s %s; ratio %.2fx, CPU time "
        "%.2fx (median of %d, interleaved)"
        % (label, b["rows"], us(bh), b["rows"] / (bh / 1e9), floor_name, us(bf),
           pf["batch_ratio"], pf["batch_cpu_ratio"], b["reps"]))
    for other in b.get("floors_ns", [])[1:]:
        say("batch        for reference, floor (%s) %s: handler/floor %.2fx"
            % (other["floor"], us(other["p50"]), bh / other["p50"]))
    pf["batch_stages_ns"] = warm_out["batch_stages"]
    say("batch stages " + ", ".join("%s %s" % (n.strip(), us(v))
                                     for n, v in warm_out["batch_stages"]))
    if warm_out.get("profiles"):
        for what, text in warm_out["profiles"].items():
            say("-- cProfile of the handler (%s), %s request(s), by tottime:" % (label, what))
            say(text)
    return pf


def overhead_parts(stages):
    """The handler's time over bare predict, by stage (medians of the
    round-robin stages): Chalice's own request handling, parsing, the log
    line, the served model around bare predict; the rest of
    ``service.predict`` (reply, headers) is what remains."""
    parts = []
    if stages.get("  bare predict", 0) > 1e6:
        # Medians of stages that each take milliseconds differ by more than
        # the overhead itself on a shared machine: only the direct stages.
        return [(name, stages[key]) for key, name in (("parse_request", "parse_request"),
                                                      ("_log (to sink)", "log line written"))
                if key in stages]
    if "handler" in stages and "service.predict" in stages:
        parts.append(("Chalice (handler - service.predict)",
                      stages["handler"] - stages["service.predict"]))
    for key, name in (("parse_request", "parse_request"), ("_log (to sink)", "log line written")):
        if key in stages:
            parts.append((name, stages[key]))
    if "served.answer_json" in stages and "  bare predict" in stages:
        parts.append(("served model over bare predict (guards, label JSON)",
                      stages["served.answer_json"] - stages["  bare predict"]))
    return parts


def report_paper(pkg, rss_mib, warm_out, label, fig):
    """Lambda memory, cost and capacity of the package that ships (the card's
    runtime)."""
    need, common = lambda_memory(rss_mib)
    fig["lambda_memory_mb"] = {"min_with_headroom": need, "common": common}
    say("memory       %s: smallest Lambda memory with 30%% headroom over its peak RSS %.1f MiB: "
        "%s MB (nearest common size %s MB); warm process after the run %.1f MiB"
        % (label, rss_mib, need, common, warm_out["rss_kib"] / 1024.0))
    duration_ms = warm_out["warm"]["handler_ns"]["p50"] / 1e6
    costs = [cost(duration_ms, m) for m in sorted({need, common, pkg["memory"]})]
    fig["cost_per_million"] = costs
    for cst in costs:
        say("cost         at %d MB, billed %d ms (p50 %.3f ms, full core): $%.2f per 1M predictions"
            " = Lambda compute $%.4f + requests $%.2f + API Gateway REST $%.2f"
            % (cst["memory_mb"], cst["billed_ms"], duration_ms, cst["total"],
               cst["lambda_compute"], cst["lambda_requests"], cst["api_gateway"]))
    per_container = 1e3 / duration_ms
    fig["capacity"] = {"requests_per_s_per_container": per_container,
                       "requests_per_s_1000_concurrent": 1000 * per_container}
    say("capacity     one warm container: %.0f requests/s (1/p50, full core); 1,000 concurrent: "
        "%.0f requests/s, before API Gateway's 10,000 rps default account quota"
        % (per_container, 1000 * per_container))


# --------------------------------------------------------------------------
# Targets.


def report_targets(figs):
    """The issue's targets across the models of the run, PASS/MISS."""
    by_key = {f["model"]: f for f in figs}
    rows = []

    def add(name, ok, figure):
        rows.append({"target": name, "pass": bool(ok), "figure": figure})

    for key, title in (("iris", "bundled"), ("rf200", "forest")):
        f = by_key.get(key)
        if f is None:
            continue
        onnx = f["paths"].get(ONNX)
        if onnx:
            add("ONNX path cold start <= 0.2x floor (%s)" % title, onnx["cold_ratio"] <= 0.2,
                "%.3fx (paired %.3fx)%s" % (onnx["cold_ratio"], onnx["cold_ratio_paired"],
                                            "; imported " + ", ".join(onnx["heavy"])
                                            if set(onnx["heavy"]) & {"sklearn", "scipy"} else ""))
            add("ONNX path peak RSS x1.3 <= 128 MB (%s)" % title,
                onnx["rss_mib"] * HEADROOM <= 128,
                "%.1f MiB x1.3 = %.0f" % (onnx["rss_mib"], onnx["rss_mib"] * HEADROOM))
        else:
            for name in ("ONNX path cold start <= 0.2x floor (%s)" % title,
                         "ONNX path peak RSS x1.3 <= 128 MB (%s)" % title):
                add(name, False, "no ONNX path: the card's runtime is scikit-learn")
        sk = f["paths"].get(SKLEARN)
        if sk:
            add("scikit-learn path cold start <= 0.5x floor (%s)" % title, sk["cold_ratio"] <= 0.5,
                "%.3fx (paired %.3fx)" % (sk["cold_ratio"], sk["cold_ratio_paired"]))
    iris = by_key.get("iris")
    if iris:
        for path in (ONNX, SKLEARN):
            pf = iris["paths"].get(path)
            if pf:
                add("package <= %d MiB zipped (bundled, %s)" % (TARGET_ZIP_MIB, PATH_LABEL[path]),
                    pf["zipped"] <= TARGET_ZIP_MIB * MiB, "%.2f MiB" % (pf["zipped"] / MiB))
    for f in figs:
        sk = f["paths"].get(SKLEARN)
        for path, pf in f["paths"].items():
            where = "%s, %s" % (f["model"], PATH_LABEL.get(path, path))
            figure = "%.3fx (CPU %.2fx; +%s over %s)" % (
                pf["warm_ratio_p50"], pf["warm_cpu_ratio_p50"], us(pf["overhead_ns"]),
                us(pf["warm"]["predict_ns"]["p50"]))
            if path == ONNX and sk:  # against what the target was set for
                figure += "; %.3fx scikit-learn's bare predict" % (
                    pf["warm"]["handler_ns"]["p50"] / sk["warm"]["predict_ns"]["p50"])
            add("warm 1-row p50 <= %.1fx bare predict (%s)" % (f["warm_target"], where),
                pf["warm_ratio_p50"] <= f["warm_target"], figure)
            add("batch <= %.1fx %s (%s)" % (f["batch_target"], "bare predict"
                                            if f["input"] == "dataframe" else "stdlib floor",
                                            where),
                pf["batch_ratio"] <= f["batch_target"],
                "%.3fx (CPU %.2fx)" % (pf["batch_ratio"], pf["batch_cpu_ratio"]))
    say("== targets, ratios measured side by side in this run")
    say("| target | result | figure |")
    say("|---|---|---|")
    for r in rows:
        say("| %s | %s | %s |" % (r["target"], "PASS" if r["pass"] else "MISS", r["figure"]))
    say()
    say("What limits warm and batch (stage medians of the same run):")
    for f in figs:
        for path, pf in f["paths"].items():
            b = dict(pf["batch_stages_ns"])
            frame = next((k for k in b if k in ("  np.asarray(rows)", "  pd.DataFrame(records)",
                                                "  column arrays")), None)
            say("  %s, %s: 1 row +%s over bare predict = %s; 1,000 rows: parse_request %s "
                "(json.loads %s + %s %s), served.answer_json %s (bare predict %s), log line %s"
                % (f["model"], PATH_LABEL.get(path, path), us(pf["overhead_ns"]),
                   ", ".join("%s %s" % (k, us(v)) for k, v in pf["limits_ns"]),
                   us(b.get("parse_request", 0)), us(b.get("  json.loads (plain)", 0)),
                   (frame or "").strip(), us(b.get(frame, 0)), us(b.get("served.answer_json", 0)),
                   us(b.get("  bare predict", 0)), us(b.get("_log (to sink)", 0))))
    say()
    return rows
