"""The report of ``tools.bench``: figures on paper (Lambda memory, cost,
capacity), one line per figure for each model, and the targets' PASS/MISS."""
import math
import statistics

from tools.bench_models import say

MiB = 1024 * 1024
ZIP_LIMIT_MIB = 50          # Lambda: direct upload
UNZIPPED_LIMIT_MIB = 250    # Lambda: function + layers, unzipped
TARGET_ZIP_MIB = 30
HEADROOM = 1.30
COMMON_MEMORY_MB = (128, 256, 512, 1024, 1536, 2048, 3008, 4096, 6144, 8192, 10240)
FULL_CORE_MB = 1769         # Lambda gives one full vCPU at 1,769 MB
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


def report_model(model, prod, naive, cold, bd, warm_out, memory):
    fig = {"model": model.key, "title": model.title, "model_sha256": model.sha256}
    say("== %s (sha256 %s...)" % (model.title, model.sha256[:12]))
    # cold start
    c = {k: summary([r["seconds"] for r in v]) for k, v in cold.items()}
    ratio = [p["seconds"] / f["seconds"] for p, f in zip(cold["prod"], cold["floor"])]
    naive_ratio = [n_["seconds"] / f["seconds"] for n_, f in zip(cold["naive"], cold["floor"])]
    fig["cold_start_s"] = c
    fig["cold_start_ratio_prod_floor"] = c["prod"]["median"] / c["floor"]["median"]
    fig["cold_start_ratio_naive_floor"] = c["naive"]["median"] / c["floor"]["median"]
    fig["cold_start_ratio_prod_floor_paired"] = summary(ratio)
    fig["cold_start_ratio_naive_floor_paired"] = summary(naive_ratio)

    def line(label, s):
        return "%s median %s (min %s, max %s, n=%d)" % (label, ms(s["median"]), ms(s["min"]),
                                                       ms(s["max"]), s["n"])
    say("cold start   " + line("production package:", c["prod"])
        + "  = %.2fx floor" % fig["cold_start_ratio_prod_floor"])
    say("cold start   " + line("floor (venv, warm .pyc):", c["floor"]))
    say("cold start   " + line("naive chalice package:", c["naive"])
        + "  = %.2fx floor, %.2fx production"
        % (fig["cold_start_ratio_naive_floor"], c["naive"]["median"] / c["prod"]["median"]))
    say("cold start   paired ratio production/floor per round: median %.2fx (min %.2f, max %.2f)"
        % (fig["cold_start_ratio_prod_floor_paired"]["median"], min(ratio), max(ratio)))
    # init breakdown
    fig["init_breakdown_s"] = bd
    steps = bd["steps"]
    say("init         (production package, instrumented run, median of %d; total %s)"
        % (len(cold["breakdown"]), ms(steps["total"])))
    for name, seconds in steps.items():
        if name == "total":
            continue
        extra = ""
        if name.startswith("ServedModel.load"):
            extra = "  (%d modules imported by unpickling)" % bd["modules_model_load"]
        say("init           %-46s %7s  %4.0f%%%s"
            % (name, ms(seconds), 100 * seconds / steps["total"], extra))
    # warm
    w = warm_out["warm"]
    h, p = w["handler_ns"], w["predict_ns"]
    fig["warm"] = w
    fig["warm_ratio_p50"] = h["p50"] / p["p50"]
    dataframe = model.input_kind == "dataframe"
    say("warm         handler app.app() 1 row: p50 %s p99 %s; bare predict%s: p50 %s p99 %s; "
        "p50 ratio %.2fx (n=%d each, interleaved blocks of %d; isolated package process)"
        % (us(h["p50"]), us(h["p99"]), " on a 1-row DataFrame" if dataframe else "",
           us(p["p50"]), us(p["p99"]), fig["warm_ratio_p50"], w["n"], w["block"]))
    say("warm         overhead of the handler over predict at p50: %s" % us(h["p50"] - p["p50"]))
    wc = w["cpu_p50_ns"]
    fig["warm_cpu_ratio_p50"] = wc["handler"] / wc["predict"]
    say("warm         thread CPU time p50 (no waiting for a core): handler %s, bare predict %s: "
        "%.2fx" % (us(wc["handler"]), us(wc["predict"]), fig["warm_cpu_ratio_p50"]))
    fig["single_stages_ns"] = warm_out["single_stages"]
    say("warm stages  (median ns each, round-robin) " + ", ".join(
        "%s %s" % (name.strip(), us(v)) for name, v in warm_out["single_stages"]))
    # batch
    b = warm_out["batch"]
    bh, bf = b["handler_ns"]["p50"], b["floor_ns"]["p50"]
    fig["batch"] = b
    fig["batch_ratio"] = bh / bf
    fig["batch_rows_per_s"] = {"handler": b["rows"] / (bh / 1e9), "floor": b["rows"] / (bf / 1e9)}
    floor_name = "floor (%s)" % b["floor_ns"]["floor"] if dataframe else "stdlib floor"
    say("batch        %d rows/request: handler %s = %.0f rows/s; %s %s = %.0f rows/s; "
        "ratio %.2fx (median of %d, interleaved)"
        % (b["rows"], us(bh), fig["batch_rows_per_s"]["handler"], floor_name, us(bf),
           fig["batch_rows_per_s"]["floor"], fig["batch_ratio"], b["reps"]))
    fig["batch_cpu_ratio"] = b["handler_ns"]["cpu_p50"] / b["floor_ns"]["cpu_p50"]
    say("batch        thread CPU time p50: handler %s, %s %s: %.2fx"
        % (us(b["handler_ns"]["cpu_p50"]), floor_name, us(b["floor_ns"]["cpu_p50"]),
           fig["batch_cpu_ratio"]))
    for other in b.get("floors_ns", [])[1:]:
        say("batch        for reference, floor (%s) %s: handler/floor %.2fx (CPU time %.2fx)"
            % (other["floor"], us(other["p50"]), bh / other["p50"],
               b["handler_ns"]["cpu_p50"] / other["cpu_p50"]))
    fig["batch_stages_ns"] = warm_out["batch_stages"]
    say("batch stages " + ", ".join("%s %s" % (name.strip(), us(v))
                                     for name, v in warm_out["batch_stages"]))
    # package
    pk = {}
    for label, meta in (("production", prod), ("naive", naive)):
        pk[label] = {k: meta[k] for k in ("zipped", "unzipped", "files", "pyc", "zip_sha256")}
        say("package      %-10s %6.2f MiB zipped (limit %d: %s), %6.2f MiB unzipped (limit %d: "
            "%s), %d files (%d .pyc)"
            % (label, meta["zipped"] / MiB, ZIP_LIMIT_MIB,
               "ok" if meta["zipped"] <= ZIP_LIMIT_MIB * MiB else "OVER",
               meta["unzipped"] / MiB, UNZIPPED_LIMIT_MIB,
               "ok" if meta["unzipped"] <= UNZIPPED_LIMIT_MIB * MiB else "OVER",
               meta["files"], meta["pyc"]))
    fig["package"] = pk
    for label, meta in (("production", prod), ("naive", naive)):
        for warning in meta.get("build_warnings", []):
            say("package      %s build said: %s" % (label, warning))
    # memory
    rss = {k: max(r["rss_kib"] for r in v) / 1024.0 for k, v in cold.items()}
    fig["peak_rss_mib"] = rss
    need, common = lambda_memory(rss["prod"])
    fig["lambda_memory_mb"] = {"min_with_headroom": need, "common": common}
    say("memory       peak RSS of the cold-start process (max over runs): production %.1f MiB, "
        "floor %.1f MiB, naive %.1f MiB; warm process after the run %.1f MiB"
        % (rss["prod"], rss["floor"], rss["naive"], warm_out["rss_kib"] / 1024.0))
    say("memory       smallest Lambda memory with 30%% headroom: %s MB (nearest common size %s MB)"
        % (need, common))
    # cost
    duration_ms = h["p50"] / 1e6
    costs = [cost(duration_ms, m) for m in sorted({need, common, memory})]
    fig["cost_per_million"] = costs
    for cst in costs:
        say("cost         at %d MB, billed %d ms (p50 %.3f ms, full core): $%.2f per 1M predictions"
            " = Lambda compute $%.4f + Lambda requests $%.2f + API Gateway REST $%.2f"
            % (cst["memory_mb"], cst["billed_ms"], duration_ms, cst["total"],
               cst["lambda_compute"], cst["lambda_requests"], cst["api_gateway"]))
    per_container = 1e3 / duration_ms
    fig["capacity"] = {"requests_per_s_per_container": per_container,
                       "requests_per_s_1000_concurrent": 1000 * per_container}
    say("capacity     one warm container: %.0f requests/s (1/p50); 1,000 concurrent executions: "
        "%.0f requests/s (%.1fM/hour), before API Gateway's 10,000 rps default account quota"
        % (per_container, 1000 * per_container, 1000 * per_container * 3600 / 1e6))
    share = min(1.0, need / float(FULL_CORE_MB))
    fig["capacity"]["cpu_share_at_min_memory"] = share
    say("capacity     measured on a full core; Lambda gives %d MB about %.0f%% of a vCPU (full "
        "vCPU at %d MB), so CPU-bound work there may take up to %.1fx longer (%.2f ms)"
        % (need, 100 * share, FULL_CORE_MB, 1 / share, duration_ms / share))
    # targets
    # A DataFrame model's targets (issue 9): warm and batch against bare
    # predict on the DataFrame; its package, which ships pandas, against
    # Lambda's limits (over 50 MiB zipped it deploys through S3).
    if dataframe:
        size_targets = [
            ("package <= %d MiB zipped (direct upload)" % ZIP_LIMIT_MIB,
             prod["zipped"] <= ZIP_LIMIT_MIB * MiB, "%.2f MiB" % (prod["zipped"] / MiB)),
            ("package <= %d MiB unzipped (via S3)" % UNZIPPED_LIMIT_MIB,
             prod["unzipped"] <= UNZIPPED_LIMIT_MIB * MiB, "%.2f MiB" % (prod["unzipped"] / MiB))]
    else:
        size_targets = [("package <= %d MiB zipped" % TARGET_ZIP_MIB,
                         prod["zipped"] <= TARGET_ZIP_MIB * MiB,
                         "%.2f MiB" % (prod["zipped"] / MiB))]
    t = [("cold start <= 1.0x floor (median ratio)", fig["cold_start_ratio_prod_floor"] <= 1.0,
          "%.3fx" % fig["cold_start_ratio_prod_floor"]),
         ("warm single-row p50 <= %.1fx bare predict" % model.warm_target,
          fig["warm_ratio_p50"] <= model.warm_target, "%.3fx" % fig["warm_ratio_p50"]),
         ("batch handler <= %.1fx %s" % (model.batch_target,
                                         "bare predict" if dataframe else "stdlib floor"),
          fig["batch_ratio"] <= model.batch_target, "%.3fx" % fig["batch_ratio"])]
    t += size_targets + [
        ("peak RSS fits 256 MB with 30% headroom", rss["prod"] * HEADROOM <= 256,
         "%.1f MiB x1.3 = %.0f" % (rss["prod"], rss["prod"] * HEADROOM)),
        ("stretch: fits 128 MB with 30% headroom", rss["prod"] * HEADROOM <= 128,
         "%.1f MiB x1.3 = %.0f" % (rss["prod"], rss["prod"] * HEADROOM))]
    fig["targets"] = [{"target": name, "pass": ok, "figure": figure} for name, ok, figure in t]
    for name, ok, figure in t:
        say("target       %-4s %-46s %s" % ("PASS" if ok else "MISS", name, figure))
    if warm_out.get("profiles"):
        for label, text in warm_out["profiles"].items():
            say("-- cProfile of the handler, %s request(s), by tottime:" % label)
            say(text)
    say()
    return fig
