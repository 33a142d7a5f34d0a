"""The function + layer layout rules (tools/build/layout.py), without a
build: which files go with the function, when the build splits, the size
budget of a split, and the stage setting that makes Chalice ship it. The
package tests (tests/test_package.py) prove the same on real builds."""
import json
import os
import zipfile

import pytest

from tools.build import layout
from tools.build.assemble import write_zip
from tools.build.common import BuildError

MiB = 1024 * 1024


@pytest.mark.parametrize("rel, function", [
    ("app.py", True),
    ("__pycache__/app.cpython-312.pyc", True),
    ("chalicelib/protocols/service.py", True),
    ("model/churn/model.joblib", True),
    ("lib/libgomp.so.1", True),
    ("pandas/core/frame.pyc", True),
    ("pandas-2.3.3.dist-info/METADATA", True),
    ("six.pyc", True),
    ("numpy/__init__.pyc", False),
    ("numpy.libs/libscipy_openblas64_.so", False),
    ("scipy/linalg/_flapack.so", False),
    ("sklearn/base.pyc", False),
    ("scikit_learn-1.9.1.dist-info/METADATA", False),
    ("threadpoolctl.pyc", False),
    ("__pycache__/threadpoolctl.cpython-312.pyc", False),  # a kept source's bytecode
    ("pandas_extras/x.pyc", False),  # a name that merely starts like pandas
])
def test_each_file_goes_where_its_module_goes(rel, function):
    assert layout.in_function(rel) is function


def test_auto_splits_only_over_the_direct_upload():
    assert layout.choose("auto", 50 * MiB) == "one"
    assert layout.choose("auto", 50 * MiB + 1) == "split"
    assert layout.choose("split", 1) == "split"
    assert layout.choose("one", 60 * MiB) == "one"
    with pytest.raises(BuildError, match="layout 'two'"):
        layout.choose("two", 1)


def test_a_split_is_checked_zip_by_zip_and_unzipped_together(capsys):
    ok = {"zipped": 10 * MiB, "unzipped": 30 * MiB}
    layout.check_split_size(ok, {"zipped": 41 * MiB, "unzipped": 123 * MiB}, direct_upload=True)
    assert "function + layer 153.0 MiB unzipped" in capsys.readouterr().out
    big_layer = {"zipped": 50 * MiB + 1, "unzipped": 150 * MiB}
    with pytest.raises(BuildError, match="the layer zip is 50.0 MiB, over .*aws cloudformation"):
        layout.check_split_size(ok, big_layer, direct_upload=True)
    layout.check_split_size(ok, big_layer)  # the S3 route: a warning
    assert "the layer zip is 50.0 MiB" in capsys.readouterr().err
    with pytest.raises(BuildError, match="250.0 MiB unzipped, over Lambda's 250 MiB"):
        layout.check_split_size({"zipped": MiB, "unzipped": 100 * MiB},
                                {"zipped": 40 * MiB, "unzipped": 150 * MiB + 1})


def _config(tmp_path, top=None, stage=None):
    config = {"version": "2.0", "app_name": "a", "stages": {"prod": {"lambda_memory_size": 512},
                                                            "dev": {}}}
    if top is not None:
        config["automatic_layer"] = top
    if stage is not None:
        config["stages"]["prod"]["automatic_layer"] = stage
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config, indent=2) + "\n")
    return str(path)


def test_the_build_records_the_layout_on_the_stage_only(tmp_path):
    path = _config(tmp_path)
    before = open(path).read()
    assert layout.record(path, "prod", split=False) is False  # already one zip: untouched
    assert open(path).read() == before
    assert layout.record(path, "prod", split=True) is True
    config = json.load(open(path))
    assert config["stages"]["prod"] == {"lambda_memory_size": 512, "automatic_layer": True}
    assert config["stages"]["dev"] == {} and "automatic_layer" not in config
    assert layout.record(path, "prod", split=True) is False
    assert layout.record(path, "prod", split=False) is True
    assert open(path).read() == before  # back to the file as it was
    # a top-level automatic_layer is overridden on the stage, never removed
    path = _config(tmp_path, top=True)
    assert layout.record(path, "prod", split=False) is True
    config = json.load(open(path))
    assert config["automatic_layer"] is True and config["stages"]["prod"]["automatic_layer"] is False
    assert layout.stage_automatic_layer(config, "prod") is False
    assert layout.stage_automatic_layer(config, "dev") is True


def test_the_two_zips_split_the_package_and_say_what_they_hold(tmp_path):
    pkg = tmp_path / "package"
    for rel, data in {"app.py": b"import sklearn\n", "__pycache__/app.cpython-312.pyc": b"c",
                      "model/m/model.json": b"{}", "pandas/__init__.pyc": b"p",
                      "sklearn/__init__.pyc": b"s" * 1000}.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_bytes(data)
    out = tmp_path / "out"
    out.mkdir()
    function = write_zip(str(pkg), str(out / "deployment.zip"), 9, select=layout.in_function)
    layer = write_zip(str(pkg), str(out / "layer-deployment.zip"), 9, prefix="python/",
                      select=lambda rel: not layout.in_function(rel))
    with zipfile.ZipFile(out / "deployment.zip") as a, \
            zipfile.ZipFile(out / "layer-deployment.zip") as b:
        assert sorted(a.namelist()) == ["__pycache__/app.cpython-312.pyc", "app.py",
                                        "model/m/model.json", "pandas/__init__.pyc"]
        assert b.namelist() == ["python/sklearn/__init__.pyc"]
    assert (function["files"], layer["files"]) == (4, 1)
    assert layer["unzipped"] == 1000
    (out / "sam.json").write_text("{}")
    lines = layout.describe_outputs(str(out))
    assert lines[0].startswith(os.path.join(str(out), "deployment.zip") + ": the function")
    assert lines[1].startswith(os.path.join(str(out), "layer-deployment.zip") + ": the layer")
    assert lines[-1] == "unzipped together: %.2f MiB (limit 250)" % (
        (function["unzipped"] + layer["unzipped"]) / MiB)
