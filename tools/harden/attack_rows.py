"""The attacks that are not an artifact in ``tools/fixtures/malicious.py``
(a compiled graph, a request body, a policy statement, an upload URI, an S3
outage) and the per-family mutation property test, each held when the
tests that replay it pass.

:func:`run` runs every row's tests in one pytest process and reads each
test's outcome from its JUnit XML report: a row is held when all of its
tests ran and passed (a skipped test holds nothing).
"""
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: (attack, [pytest node ids that replay it and require it held])
ROWS = [
    ("ONNX graph with a Loop of 2**62 trips, its hash on the card: refused at load",
     ["tests/test_graph_policy.py::test_the_loop_with_2_to_the_62_trips_is_refused_at_load",
      "tests/test_graph_policy.py::test_a_run_past_its_deadline_is_stopped"]),
    ("128-byte NPY body declaring shape (2**36,): a 400, nothing allocated",
     ["tests/test_body_allocation.py::test_128_byte_npy_declaring_2_to_the_36_elements_is_a_400",
      "tests/test_body_allocation.py::test_npy_header_is_checked_before_any_allocation"]),
    ("NotAction + NotResource statement beside the exact grant (policy check)",
     ["tests/test_model_policy_iam.py::test_statements_that_cannot_be_proven_harmless_are_refused"]),
    ("publish --upload to an s3:// URI with * or ?",
     ["tests/test_model_policy_iam.py::"
      "test_publish_refuses_a_wildcard_upload_uri_before_anything_is_sent"]),
    ("transient S3 failure at init (connection refused, missing bucket) then recovery",
     # in the file's order: the emulator outlives a test, and the first creates no bucket
     ["tests/test_s3_recovery.py::test_missing_bucket_then_created_is_served_without_a_new_instance",
      "tests/test_s3_recovery.py::test_connections_refused_then_forwarded_recover"]),
    ("every native array of tree, forest and boosting families mutated: 503, never a signal",
     ["tests/test_native_mutations.py::test_every_mutation_of_native_state_is_refused_or_harmless"
      "[%s]" % family for family in ("decision_tree_classifier", "random_forest_classifier",
                                     "gradient_boosting_regressor",
                                     "hist_gradient_boosting_classifier")]),
]


def _outcomes(xml_path):
    """{(file, test name with parameters): "passed" | "failed" | "skipped"}."""
    outcomes = {}
    for case in ET.parse(xml_path).getroot().iter("testcase"):
        module = case.get("classname", "").replace(".", "/") + ".py"
        status = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                status = "failed"
            elif child.tag == "skipped" and status == "passed":
                status = "skipped"
        outcomes[(module, case.get("name"))] = status
    return outcomes


def _matching(outcomes, node):
    path, _, name = node.partition("::")
    return [status for (module, test), status in outcomes.items()
            if module == path and (test == name or test.startswith(name + "["))]


def run(out_dir, timeout=900):
    """``[(attack, tests run, held)]``, from one pytest run."""
    xml_path = os.path.join(out_dir, "attack_rows.xml")
    nodes = [node for _, ids in ROWS for node in ids]
    with open(os.path.join(out_dir, "attack_rows.log"), "w") as log:
        try:
            subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            "--no-header", "--junitxml", xml_path] + nodes,
                           cwd=PROJECT_DIR, stdout=log, stderr=subprocess.STDOUT,
                           timeout=timeout, env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
        except subprocess.TimeoutExpired:
            pass
    try:
        outcomes = _outcomes(xml_path)
    except (OSError, ET.ParseError):
        outcomes = {}
    rows = []
    for attack, ids in ROWS:
        statuses = [s for node in ids for s in _matching(outcomes, node)]
        held = bool(statuses) and all(s == "passed" for s in statuses) and all(
            _matching(outcomes, node) for node in ids)
        rows.append((attack, len(statuses), held))
    return rows


if __name__ == "__main__":
    os.makedirs(os.path.join(PROJECT_DIR, "build", "harden"), exist_ok=True)
    for attack, count, held in run(os.path.join(PROJECT_DIR, "build", "harden")):
        print("| %s | %d tests | %s |" % (attack, count, "held" if held else "NOT HELD"))
