"""``chalicelib.ops.lazy_imports``: the import hook that makes the modules the
build found unused lazy.

Each case runs in a fresh interpreter (an import hook changes the process)
on a small real package written to ``tmp_path``, whose modules record in
``ran.RAN`` when their code runs. The package test (``tests/test_package.py``,
``test_lazy_modules_load_when_forced``) proves the build's list on the real
dependencies.
"""
import json
import os
import subprocess
import sys
import textwrap

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FILES = {
    "ran.py": "RAN = []\n",
    "demo/__init__.py": "import ran\nran.RAN.append(__name__)\nfrom . import sub\n",
    "demo/sub.py": "import ran\nran.RAN.append(__name__)\nVALUE = 42\n",
    "demo/heavy.py": "import ran\nran.RAN.append(__name__)\nVALUE = 'heavy'\n",
    "user.py": "import demo.heavy\nimport demo.heavy as again\n\ndef use():\n"
               "    return demo.heavy.VALUE\n",
}


def run(tmp_path, code):
    for rel, text in FILES.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    script = "import json, os, sys\nsys.path[:0] = [%r, %r]\n" % (str(tmp_path), REPO) \
        + textwrap.dedent(code)
    proc = subprocess.run([sys.executable, "-I", "-B", "-c", script], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_lazy_module_runs_on_first_use_only(tmp_path):
    out = run(tmp_path, """
        from chalicelib.ops import lazy_imports
        names = []
        lazy_imports.install(["demo.heavy"], names.append)
        import ran, user   # `import demo.heavy` twice, as libraries do
        after_import = list(ran.RAN)
        heavy = sys.modules["demo.heavy"]
        meta = [heavy.__name__, heavy.__spec__.name, os.path.basename(heavy.__file__)]
        lazy_after_meta = lazy_imports.is_lazy(heavy)
        value = user.use()
        print(json.dumps({"after_import": after_import, "meta": meta,
                          "lazy_after_meta": lazy_after_meta, "value": value,
                          "ran": ran.RAN, "on_run": names,
                          "lazy_now": lazy_imports.is_lazy(heavy)}))
    """)
    assert out["after_import"] == ["demo", "demo.sub"]  # imported, not run
    assert out["meta"] == ["demo.heavy", "demo.heavy", "heavy.py"]
    assert out["lazy_after_meta"] is True  # the import system's metadata runs nothing
    assert out["value"] == "heavy"
    assert out["ran"] == ["demo", "demo.sub", "demo.heavy"]  # once, on first use
    assert out["on_run"] == ["demo.heavy"] and out["lazy_now"] is False


def test_the_standard_lazyloader_runs_on_the_second_import(tmp_path):
    """The control: why the app has its own hook. With Python 3.12's
    importlib.util.LazyLoader, a second `import demo.heavy` (the import
    statement reads __spec__) runs the module although nothing used it."""
    out = run(tmp_path, """
        import importlib.util
        from importlib.machinery import PathFinder
        class Finder:
            def find_spec(self, name, path=None, target=None):
                if name != "demo.heavy":
                    return None
                spec = PathFinder.find_spec(name, path, target)
                spec.loader = importlib.util.LazyLoader(spec.loader)
                return spec
        sys.meta_path.insert(0, Finder())
        import ran, user
        print(json.dumps({"ran": ran.RAN}))
    """)
    assert out["ran"] == ["demo", "demo.sub", "demo.heavy"]


def test_a_lazy_package_runs_before_its_submodule_once(tmp_path):
    """Importing demo.sub reads demo.__path__, which runs the lazy package
    first (as an eager import would), and the package's own `from . import
    sub` imports sub: the import in progress must get that very module, not
    run sub a second time (a C extension would refuse)."""
    out = run(tmp_path, """
        from chalicelib.ops import lazy_imports
        lazy_imports.install(["demo", "demo.sub"])
        import ran
        import demo
        lazy_package = lazy_imports.is_lazy(demo)
        import demo.sub
        from demo.sub import VALUE
        print(json.dumps({"lazy_package": lazy_package, "ran": ran.RAN, "value": VALUE,
                          "same": sys.modules["demo.sub"] is demo.sub,
                          "spec": sys.modules["demo.sub"].__spec__.name,
                          "loader": type(sys.modules["demo.sub"].__loader__).__name__}))
    """)
    assert out["lazy_package"] is True
    assert out["ran"] == ["demo", "demo.sub"]  # each once, parent first
    assert out["value"] == 42 and out["same"] is True
    assert out["spec"] == "demo.sub" and out["loader"] == "SourceFileLoader"


def test_threads_run_a_lazy_module_once(tmp_path):
    out = run(tmp_path, """
        import threading
        from chalicelib.ops import lazy_imports
        lazy_imports.install(["demo.heavy"])
        import ran, demo.heavy
        values = []
        threads = [threading.Thread(target=lambda: values.append(demo.heavy.VALUE))
                   for _ in range(8)]
        for t in threads: t.start()
        for t in threads: t.join()
        print(json.dumps({"values": values, "ran": ran.RAN}))
    """)
    assert out["values"] == ["heavy"] * 8
    assert out["ran"].count("demo.heavy") == 1


def test_nothing_is_lazy_without_the_build_list(tmp_path):
    """The dev app (no chalicelib/_lazy_modules.json: only the build writes
    it, into the package) imports everything eagerly."""
    out = run(tmp_path, """
        from chalicelib.ops import lazy_imports
        finder = lazy_imports.install()
        print(json.dumps({"finder": finder, "file": os.path.exists(lazy_imports.LIST_FILE),
                          "hooks": [type(f).__name__ for f in sys.meta_path]}))
    """)
    assert out["finder"] is None and out["file"] is False
    assert "LazyFinder" not in out["hooks"]
