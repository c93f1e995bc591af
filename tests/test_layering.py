"""The package's shape, read with `ast` (no module is imported): imports run one way.

Layers, in order (docs/design.md): core -> demodata -> data -> model -> training -> inference ->
scoring -> pipeline -> launcher -> cli. A module may import from its own layer or the ones before it, never from a later
one; the package's modules form no import cycle (imports inside functions included); no module
imports another's `_private` name; imports of the package's own modules sit at the top of a file
(a function-level import is for heavy third-party libraries only).
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fashionai"
LAYERS = ("core", "demodata", "data", "model", "training", "inference", "scoring", "pipeline", "launcher", "cli")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(source: str, modules: dict[str, Path]) -> list[tuple[str, str, bool]]:
    """(imported module, imported name or '', at top level?) of every import of the package's own code."""
    tree = ast.parse(source)
    in_functions = {id(sub) for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                    for sub in ast.walk(node)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, "", id(node) not in in_functions) for a in node.names
                      if a.name.split(".")[0] == "fashionai"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "fashionai":
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                at_top = id(node) not in in_functions
                found.append((sub, "", at_top) if sub in modules else (node.module, alias.name, at_top))
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: {m for m, _, _ in _imports(path.read_text(), modules) if m in modules and m not in (name, "fashionai")}
            for name, path in modules.items()}


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else -1  # fashionai, __main__: outside


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_every_module_belongs_to_a_layer():
    names = [m for m in _modules() if m not in ("fashionai", "fashionai.__main__")]
    assert names and [m for m in names if _layer(m) < 0] == []


def test_no_import_cycles():
    assert _cycles(_graph()) == []


def test_imports_never_reach_a_later_layer():
    upward = [f"{a} -> {b}" for a, deps in _graph().items() for b in deps
              if _layer(a) >= 0 and _layer(b) > _layer(a)]
    assert upward == []


def test_no_private_name_is_imported_from_another_module():
    modules = _modules()
    private = [f"{name} imports {target}.{imported}" for name, path in modules.items()
               for target, imported, _ in _imports(path.read_text(), modules)
               if imported.startswith("_") and not imported.endswith("__") and target != name]
    assert private == []


def test_the_package_imports_its_own_modules_at_the_top_of_a_file():
    modules = _modules()
    inside = [f"{name} imports {target}" for name, path in modules.items()
              for target, _, at_top in _imports(path.read_text(), modules) if not at_top]
    assert inside == []


def test_the_checks_see_each_fault():
    """The checks above can fail: made-up code with each fault is caught."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _layer("fashionai.core.tasks") < _layer("fashionai.training.fit") < _layer("fashionai.cli")
    source = "from fashionai.data.loaders import _hidden, make_loader\ndef f():\n    from fashionai.core import tasks\n"
    assert _imports(source, _modules()) == [("fashionai.data.loaders", "_hidden", True),
                                            ("fashionai.data.loaders", "make_loader", True),
                                            ("fashionai.core.tasks", "", False)]


@pytest.mark.parametrize("layer", LAYERS)
def test_layer_folders_exist(layer):
    assert (PACKAGE / layer).is_dir() or (PACKAGE / f"{layer}.py").is_file()
