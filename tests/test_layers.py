"""The layers of the package (docs/ARCHITECTURE.md): no module imports from a higher layer.

Every module of oanet_tf/ is parsed with `ast`, and every import in it, at the top or inside a
function, is checked: a module may import from its own layer and the layers below.
"""

import ast
import os

import pytest

PACKAGE = "oanet_tf"
ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), PACKAGE)
# Bottom up: what each part of the package is (its top-level module or folder under oanet_tf/).
LAYERS = (
    ("__init__", "ops", "config", "errors", "fileio", "cluster", "environment", "dir_lock"),
    ("data", "modeling"),
    ("evaluation", "inference"),
    ("training", "conversion", "export", "presets", "segmenter"),
    ("cli", "__main__"),
)
LAYER_OF = {part: level for level, parts in enumerate(LAYERS) for part in parts}


def package_modules(root: str = ROOT) -> dict:
    """{dotted module name: path} of every .py file under `root`."""
    modules = {}
    for folder, _, files in os.walk(root):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                relative = os.path.relpath(path, os.path.dirname(root))[:-len(".py")]
                modules[relative.replace(os.sep, ".")] = path
    return modules


def part_of(module: str) -> str:
    """oanet_tf.modeling.oanet -> modeling; oanet_tf.config -> config; oanet_tf -> __init__."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imported_modules(path: str, module: str) -> list:
    """(line, dotted name) of every oanet_tf module that `path` imports, anywhere in it;
    `from oanet_tf.x import y` counts as an import of oanet_tf.x, `from oanet_tf import x` as
    one of oanet_tf.x."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    package = module if path.endswith("__init__.py") else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            name = node.module or ""
            if node.level:  # relative: resolved against this module's package
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([name] if name else []))
            if name == PACKAGE:  # from oanet_tf import training
                found += [(node.lineno, f"{PACKAGE}.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, name))
    return [(line, name) for line, name in found
            if name == PACKAGE or name.startswith(PACKAGE + ".")]


def upward_imports(root: str = ROOT) -> list:
    """'module (line N) imports name: layer a above layer b' for every import that goes up."""
    problems = []
    for module, path in sorted(package_modules(root).items()):
        level = LAYER_OF[part_of(module)]
        for line, name in imported_modules(path, module):
            target = part_of(name)
            if target in LAYER_OF and LAYER_OF[target] > level:
                # Numbered from 1 at the bottom, as docs/ARCHITECTURE.md draws them.
                problems.append(f"{module} (line {line}) imports {name}: layer "
                                f"{LAYER_OF[target] + 1} ({target}) is above layer "
                                f"{level + 1} ({part_of(module)})")
    return problems


def test_every_part_of_the_package_has_a_layer():
    parts = {part_of(module) for module in package_modules()}
    assert parts <= set(LAYER_OF), f"not in LAYERS: {sorted(parts - set(LAYER_OF))}"


def test_no_module_imports_from_a_higher_layer():
    problems = upward_imports()
    assert not problems, "\n".join(problems)


def test_modeling_imports_nothing_above_data_and_modeling():
    above = {part for level in LAYERS[LAYER_OF["modeling"] + 1:] for part in level}
    assert {"training", "conversion", "inference", "export", "cli"} <= above
    problems = [p for p in upward_imports() if p.startswith(f"{PACKAGE}.modeling")]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("source, problem", [
    ("from oanet_tf.training import engine\n", "imports oanet_tf.training: layer 4"),
    ("def f():\n    import oanet_tf.cli.train\n", "imports oanet_tf.cli.train: layer 5"),
    ("from ..inference.writer import PanopticWriter\n", "imports oanet_tf.inference.writer"),
    ("from oanet_tf import export\n", "imports oanet_tf.export: layer 4"),
    ("from oanet_tf.ops import nms\nfrom . import fpn\nfrom oanet_tf import data\n", None),
])
def test_the_check_itself(tmp_path, source, problem):
    """A hand-made package: an upward import at the top, in a function, relative; and none."""
    root = tmp_path / PACKAGE
    (root / "modeling").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "modeling" / "__init__.py").write_text("")
    (root / "modeling" / "net.py").write_text(source)
    problems = upward_imports(str(root))
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problems[0].startswith("oanet_tf.modeling.net (line ")
        assert problem in problems[0]
