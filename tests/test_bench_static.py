"""What ``make bench`` reads off a package without timing it side by side
(tools/bench/static.py): the -X importtime parse, the zipped size per
top-level package with the room left for the model, the Lambda estimate."""
import os
import sys
import zipfile

from tools.bench.static import (FULL_CORE_MB, ZIP_LIMIT, import_times, lambda_estimate,
                                summarize_imports, top_level, zip_sizes)


def test_import_times_of_a_real_interpreter():
    rows = import_times([sys.executable, "-I", "-X", "importtime", "-c", "import json.decoder"],
                        cwd=os.getcwd(), env=dict(os.environ))
    names = [name for name, _, _, _ in rows]
    assert "json" in names and "json.decoder" in names
    for _, self_us, cumulative_us, depth in rows:
        assert 0 <= self_us <= cumulative_us and depth >= 0
    summary = summarize_imports(rows, top=3)
    assert summary["modules"] == len(rows)
    assert len(summary["top_self"]) == 3 and len(summary["top_cumulative"]) == 3
    # The outermost imports hold everything: their cumulative times add up to
    # at least any single module's cumulative time.
    assert summary["total_us"] >= max(cum for _, _, cum, _ in rows)
    by_package = dict(summary["by_package"])
    assert by_package["json"] == sum(s for n, s, _, _ in rows if n.split(".")[0] == "json")


def test_zip_sizes_group_by_top_level_package(tmp_path):
    path = tmp_path / "package.zip"
    files = {"app.py": b"import chalice\n" * 50,
             "chalicelib/protocols/service.py": b"x = 1\n" * 400,
             "numpy/__init__.pyc": os.urandom(5000),
             "numpy.libs/libopenblas.so": os.urandom(20000),
             "scikit_learn-1.9.1.dist-info/METADATA": b"Name: scikit-learn\n" * 30,
             "sklearn/base.pyc": os.urandom(3000),
             "model/model.json": b"{}",
             "model/model.joblib": os.urandom(7000)}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    sizes = zip_sizes(str(path), "model")
    packages = dict(sizes["packages"])
    assert set(packages) == {"app.py", "chalicelib", "numpy", "sklearn", "model"}
    # numpy.libs counts as numpy, the dist-info as sklearn; random bytes do
    # not compress, so each package costs at least its bytes.
    assert packages["numpy"] >= 25000 and packages["sklearn"] >= 3000
    assert packages["model"] >= 7002
    # Every entry's bytes and headers, all but the end-of-directory record.
    assert sum(packages.values()) == os.path.getsize(path) - 22
    assert sizes["zipped"] == os.path.getsize(path)
    assert sizes["room_for_model"] == ZIP_LIMIT - (sizes["zipped"] - packages["model"])


def test_top_level_names():
    assert top_level("numpy.libs/libgfortran.so", "model") == "numpy"
    assert top_level("scikit_learn.libs/libgomp.so", "model") == "sklearn"
    assert top_level("onnxruntime-1.32.0.dist-info/RECORD", "model") == "onnxruntime"
    assert top_level("app.py", "model") == "app.py"
    assert top_level("models/x.py", "model") == "models"  # not the model directory
    assert top_level("srv/model/model.onnx", "srv/model") == "model"


def test_lambda_estimate_scales_with_the_cpu_share():
    assert lambda_estimate(1.0, FULL_CORE_MB) == 1.0
    assert lambda_estimate(1.0, 3008) == 1.0       # more memory buys no more than one vCPU here
    assert abs(lambda_estimate(0.5, 512) - 0.5 * 1769 / 512) < 1e-12
