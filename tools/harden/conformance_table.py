"""Run the peers' ported conformance checks (tests/conformance/) and print,
per peer, the checks ported, passing, failing and out of scope.

    .venv/bin/python -m tools.harden.conformance_table [extra pytest arguments]

A check is a test item (each parametrized case counts once); an out-of-scope
check is one skipped with a reason starting "out of scope" (the reasons are
listed in docs/protocols-conformance.md). Exit status: pytest's.
"""
import collections
import sys

import pytest

PEERS = {"test_mlflow": "MLflow scoring server", "test_kserve": "KServe (V1, V2 server)",
         "test_open_inference": "Open Inference Protocol (required API)",
         "test_triton": "Triton (HTTP, extensions)", "test_sagemaker": "SageMaker container"}


class Tally:
    def __init__(self):
        self.counts = collections.defaultdict(collections.Counter)

    def pytest_runtest_logreport(self, report):
        module = report.nodeid.split("::")[0].rsplit("/", 1)[-1][:-3]
        if report.when == "call" or (report.when == "setup" and not report.passed):
            if report.skipped:
                reason = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else ""
                kind = "out of scope" if "out of scope" in reason else "skipped"
            else:
                kind = "passing" if report.passed else "failing"
            self.counts[module][kind] += 1


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    tally = Tally()
    status = pytest.main(["-q", "-p", "no:cacheprovider", "tests/conformance"] + argv,
                         plugins=[tally])
    rows = [("peer", "ported", "passing", "failing", "out of scope")]
    totals = collections.Counter()
    for module, name in PEERS.items():
        counts = tally.counts.get(module, collections.Counter())
        ported = sum(counts.values())
        totals.update(counts)
        rows.append((name, ported, counts["passing"], counts["failing"] + counts["skipped"],
                     counts["out of scope"]))
    rows.append(("total", sum(totals.values()), totals["passing"],
                 totals["failing"] + totals["skipped"], totals["out of scope"]))
    print()
    print("| " + " | ".join(str(c) for c in rows[0]) + " |")
    print("|" + "---|" * len(rows[0]))
    for row in rows[1:]:
        print("| " + " | ".join(str(c) for c in row) + " |")
    return int(status)


if __name__ == "__main__":
    sys.exit(main())
