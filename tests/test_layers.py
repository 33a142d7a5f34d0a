"""The layers of chalicelib, as its package docstring lists them: each
package imports only packages below it (and itself), read from the source's
imports, so a crossing import fails here instead of growing unseen."""
import ast
import os

from tests.conftest import PROJECT_DIR

#: Bottom up; a package may import those before it in this list.
LAYERS = ("http", "schema", "safeload", "runtimes", "ops", "page", "protocols", "batch")


def _imports(path):
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + ["%s.%s" % (node.module, a.name) for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "chalicelib" and len(parts) > 1 and parts[1] in LAYERS:
                yield parts[1]


def _crossings():
    root = os.path.join(PROJECT_DIR, "chalicelib")
    found = set()
    for layer in LAYERS:
        for dirpath, _, files in os.walk(os.path.join(root, layer)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(dirpath, name)
                    for imported in _imports(path):
                        if LAYERS.index(imported) > LAYERS.index(layer):
                            found.add((os.path.relpath(path, PROJECT_DIR), imported))
    return found


def test_every_import_goes_down_the_layers():
    assert _crossings() == set()


def test_the_package_docstring_lists_the_layers_in_this_order():
    import chalicelib
    listed = [line.split(":mod:`.", 1)[1].split("`", 1)[0]
              for line in chalicelib.__doc__.splitlines() if ":mod:`." in line]
    assert listed == list(LAYERS)
