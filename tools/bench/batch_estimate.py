"""Time and cost of a batch job on AWS, *estimated* from what the batch
benchmark measured: rows per byte of the file, rows per second per worker,
the S3 requests and the assembly's seconds per range.

Assumptions, printed with the figures: a range takes its rows at the
workers' measured rows per CPU-second, on a Lambda that gets
``memory/1,769`` of a vCPU below 1,769 MB (one full vCPU taken as one core of
the measuring machine), plus the S3 calls' measured seconds per range
(against moto, which reads a whole object for a ranged GET: conservative);
the workers' S3 and SQS traffic is billed per request (no data transfer
within the region); the SQS event source's empty long polls, the input's
upload and the objects' storage are left out; ``N`` workers run the ranges
in waves of ``N``; the assembly grows with the number of ranges like the
measured one (a server-side copy, or a small part's GET and upload, each). Prices: :mod:`tools.bench.report` for Lambda,
and S3 Standard and SQS standard queues, us-east-1, below.
"""
import math

from chalicelib.batch import ranges
from tools.bench.report import LAMBDA_GB_S, LAMBDA_PER_M
from tools.bench.static import FULL_CORE_MB

S3_GET_PER_1K = 0.0004   # GET, HEAD (and SELECT), per 1,000 requests
S3_PUT_PER_1K = 0.005    # PUT, COPY, POST, LIST (multipart calls among them), per 1,000
SQS_PER_M = 0.40         # standard queue, per 1M requests (64 KiB chunks)
GET_CLASS = ("get_object", "head_object")
PUT_CLASS = ("put_object", "upload_part", "upload_part_copy", "create_multipart_upload",
             "complete_multipart_upload", "list_objects_v2", "copy_object")
FREE = ("delete_object", "abort_multipart_upload")


def s3_per_range(calls, n_ranges):
    """``(GET-class, PUT-class)`` requests per range from the counted calls
    ``{method: n}`` of a run of ``n_ranges`` ranges."""
    gets = sum(n for name, n in calls.items() if name in GET_CLASS)
    puts = sum(n for name, n in calls.items() if name in PUT_CLASS)
    return gets / n_ranges, puts / n_ranges


def estimate(size_bytes, measured, memory_mb, concurrency):
    """One line of the estimate table: a file of ``size_bytes`` like the
    measured one, workers of ``memory_mb`` MB, ``concurrency`` at a time.
    ``measured``: rows_per_byte, rows_per_cpu_s, s3_s_per_range, range_bytes,
    s3_get_per_range, s3_put_per_range, assembly_s_per_range, split_s."""
    rows = measured["rows_per_byte"] * size_bytes
    n_ranges = len(ranges.plan(size_bytes, measured["range_bytes"]))
    share = min(1.0, memory_mb / float(FULL_CORE_MB))
    range_s = (rows / n_ranges) / (measured["rows_per_cpu_s"] * share) \
        + measured["s3_s_per_range"]
    worker_s = range_s * n_ranges
    rate = rows / worker_s
    assembly_s = measured["assembly_s_per_range"] * n_ranges
    wall_s = measured["split_s"] + math.ceil(n_ranges / concurrency) * range_s + assembly_s
    gb_s = (worker_s + assembly_s + measured["split_s"]) * memory_mb / 1024.0
    invocations = n_ranges + 1
    sqs_requests = math.ceil(n_ranges / 10) + 2 * n_ranges  # send in tens; receive, delete
    s3_get = measured["s3_get_per_range"] * n_ranges
    s3_put = measured["s3_put_per_range"] * n_ranges
    costs = {"lambda_compute": gb_s * LAMBDA_GB_S,
             "lambda_requests": invocations * LAMBDA_PER_M / 1e6,
             "sqs": sqs_requests * SQS_PER_M / 1e6,
             "s3_requests": s3_get * S3_GET_PER_1K / 1e3 + s3_put * S3_PUT_PER_1K / 1e3}
    return {"size_bytes": size_bytes, "rows": int(rows), "ranges": n_ranges,
            "memory_mb": memory_mb, "vcpu_share": round(share, 3), "concurrency": concurrency,
            "rows_per_s_per_worker": rate, "range_s": range_s, "wall_s": wall_s,
            "gb_s": gb_s, "invocations": invocations, "sqs_requests": sqs_requests,
            "s3_get": int(round(s3_get)), "s3_put": int(round(s3_put)),
            "cost": dict(costs, total=sum(costs.values()))}
