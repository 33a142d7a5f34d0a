"""The batch benchmark's own parts: the generated file is what it says it
is, the read-back check catches a lost, duplicated, reordered or wrongly
reported row, the estimates scale as stated; and one small run of the
whole benchmark (moto on loopback, two worker processes, a crash and a
redelivery) passes its check."""
import io
import json

import pytest

from tools.bench import batch_check, batch_estimate, batch_file


@pytest.fixture(scope="module", params=["iris", "dataframe"])
def generated(request, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("gen") / ("%s.csv" % request.param))
    return batch_file.generate(path, 400_000, request.param, seed=3)


def _lines(generated):
    with open(generated.path, "rb") as f:
        return f.read().split(b"\n")


def test_the_generated_file_has_the_edges_it_reports(generated):
    lines = _lines(generated)
    with open(generated.path, "rb") as f:
        data = f.read()
    assert len(data) == generated.bytes and abs(generated.bytes - 400_000) < 200
    assert not data.endswith(b"\n") and len(lines) == generated.lines
    assert lines[0] == ",".join(generated.header).encode()
    kinds = batch_file.SHAPES["iris" if generated.header == batch_file.IRIS_HEADER
                              else "dataframe"][2]
    assert sorted(set(generated.bad.values())) == sorted(kinds)  # every kind of bad row
    for number, kind in generated.bad.items():
        assert lines[number - 1] == kinds[kind]
    assert [lines[n - 1] for n in generated.blank] and \
        all(not lines[n - 1].strip() for n in generated.blank)
    assert sum(line.endswith(b"\r") for line in lines) == generated.crlf > 0
    assert generated.rows == generated.lines - 1 - len(generated.bad) - len(generated.blank)


def _joined_output(generated, rows=None):
    """The output a correct job gives (join, a made-up prediction)."""
    lines = _lines(generated)
    skip = set(generated.bad) | set(generated.blank) | {1}
    good = [line.rstrip(b"\r") for n, line in enumerate(lines, 1) if n not in skip]
    good = good if rows is None else rows(good)
    header = (",".join(generated.header) + ",prediction\n").encode()
    return header + b"".join(line + b",class-%d\n" % (len(line) % 3) for line in good)


def _problems(generated, output_bytes, errors=None, manifest=None):
    output = batch_check.read_output(io.BytesIO(output_bytes).read, [0, 5])
    errors = [{"line": n, "reason": "bad"} for n in sorted(generated.bad)] \
        if errors is None else errors
    manifest = manifest or {"status": "complete", "rows_in": generated.rows + len(generated.bad),
                            "rows_scored": generated.rows, "rows_failed": len(generated.bad),
                            "parts_done": 3, "parts_total": 3}
    return batch_check.check(generated, lambda: open(generated.path, "rb"), output, errors,
                             manifest)


def test_the_check_passes_an_exact_output_and_picks_its_samples(generated):
    data = _joined_output(generated)
    assert _problems(generated, data) == []
    output = batch_check.read_output(io.BytesIO(data).read, [0, 7, generated.rows - 1])
    lines = data.split(b"\n")
    assert output.samples == {0: lines[1], 7: lines[8], generated.rows - 1: lines[-2]}


@pytest.mark.parametrize("damage", [
    lambda rows: rows[:100] + rows[101:],                    # a row lost
    lambda rows: rows[:100] + [rows[100]] + rows[100:],      # a row twice
    lambda rows: rows[:100] + [rows[101], rows[100]] + rows[102:],  # two rows swapped
])
def test_the_check_catches_a_lost_duplicated_or_reordered_row(generated, damage):
    assert "the output's rows are not the input's good rows, once each, in order" in \
        _problems(generated, _joined_output(generated, damage))


def test_the_check_catches_an_error_report_or_manifest_that_is_off(generated):
    bad = sorted(generated.bad)
    problems = _problems(generated, _joined_output(generated),
                         errors=[{"line": n, "reason": "bad"} for n in bad[1:]])
    assert len(problems) == 1 and "not reported: [%d]" % bad[0] in problems[0]
    problems = _problems(generated, _joined_output(generated),
                         errors=[{"line": n, "reason": "bad"} for n in bad + [2]])
    assert "not bad: [2]" in problems[0]
    problems = _problems(generated, _joined_output(generated), manifest={
        "status": "complete", "rows_in": 1, "rows_scored": 1, "rows_failed": 0,
        "parts_done": 1, "parts_total": 2})
    assert len(problems) == 1 and problems[0].startswith("manifest")


def test_samples_are_spread_over_the_whole_output():
    at = batch_check.sample_indices(1_000_000, 1000, seed=1)
    assert len(at) == 1000 and at == sorted(at) and at[0] < 1000 and at[-1] >= 999_000
    assert batch_check.sample_indices(5, 10) == [0, 1, 2, 3, 4]


def test_the_estimate_scales_with_size_memory_and_concurrency():
    measured = {"rows_per_byte": 0.05, "rows_per_cpu_s": 40_000.0, "s3_s_per_range": 1.0,
                "range_bytes": 16 * 2 ** 20, "s3_get_per_range": 3.0, "s3_put_per_range": 4.0,
                "assembly_s_per_range": 2.0 / 64, "split_s": 0.5}
    one = batch_estimate.estimate(2 ** 30, measured, 1769, 10)
    assert one["ranges"] == 64 and one["rows"] == int(0.05 * 2 ** 30)
    # a range: its rows at one full vCPU, plus its S3 seconds
    assert one["range_s"] == pytest.approx(one["rows"] / 64 / 40_000 + 1.0)
    assert one["wall_s"] == pytest.approx(0.5 + 7 * one["range_s"] + 2.0)
    assert one["cost"]["lambda_compute"] == pytest.approx(
        (64 * one["range_s"] + 2.0 + 0.5) * 1769 / 1024 * 0.0000166667)
    assert one["cost"]["s3_requests"] == pytest.approx(64 * (3 * 0.0004 + 4 * 0.005) / 1000)
    assert one["cost"]["sqs"] == pytest.approx((7 + 128) * 0.4 / 1e6)
    ten = batch_estimate.estimate(10 * 2 ** 30, measured, 1769, 10)
    assert ten["ranges"] == 640 and ten["cost"]["total"] == pytest.approx(
        10 * one["cost"]["total"], rel=0.01)
    slow = batch_estimate.estimate(2 ** 30, measured, 512, 10)
    assert slow["vcpu_share"] == pytest.approx(512 / 1769, abs=1e-3)
    assert slow["range_s"] - 1.0 == pytest.approx((one["range_s"] - 1.0) * 1769 / 512)
    assert batch_estimate.estimate(2 ** 30, measured, 1769, 100)["wall_s"] < one["wall_s"]


def test_a_small_run_of_the_whole_benchmark_is_complete_and_exact(tmp_path, capsys):
    from tools.bench import batch_gb
    result = batch_gb.bench(size_mb=1, workers=2, kind="iris", visibility=5, samples=500,
                            concurrency=(10,))
    assert result["ok"], result["problems"]
    assert result["crashes"] == 1 and result["redelivered"] == 1
    assert result["rows_scored"] == result["file"]["rows"] > 50_000
    assert result["rows_failed"] == result["file"]["bad_rows"] >= 6
    assert result["samples"] == 500 and result["samples_differ"] == 0
    assert result["floor"]["rows"] > 0 and result["rows_per_cpu_s_per_worker"] > 0
    assert [e["size_bytes"] for e in result["estimates"]][::2] == [2 ** 30] * 2 + [10 * 2 ** 30] * 2
    printed = capsys.readouterr().out
    assert "check PASSED" in printed and "ESTIMATES (not measured)" in printed
    saved = tmp_path / "bench.json"
    saved.write_text(json.dumps({"models": []}))
    batch_gb.save(str(saved), result)
    assert json.loads(saved.read_text())["batch"]["iris"]["ok"] is True
    assert json.loads(saved.read_text())["models"] == []
