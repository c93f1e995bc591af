"""The README and docs/ describe the code as it is.

- docs/layout.md's tree names real files, and every module, script and benchmark is in it;
- the README stays short, keeps the two commands CI and newcomers rely on, and links every page;
- every link, `fashionai/...py` path, dotted `fashionai.x.y` module and `fashionai.pkg.mod.name`
  (or a backticked `layer.mod.name`) named in README.md and docs/*.md exists, read with `ast`;
- docs/design.md names the layers tests/test_layering.py enforces, in its order, every module, and
  the tasks and classes of fashionai.core.tasks;
- no issue numbers or dated notes in the user docs (bench/RESULTS.md, the lab log, keeps them).
"""

import ast
import re
from functools import cache
from pathlib import Path

import pytest

from fashionai.core.tasks import TASKS

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "fashionai"
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
USER_DOCS = [README, *DOCS]
FILE_SUFFIXES = {"json", "csv", "py", "png", "md", "params", "states", "rec", "idx", "lst", "npy", "txt",
                 "onnx", "log", "sh", "yaml", "jpg", "lock"}


def _layers() -> tuple[str, ...]:
    """tests/test_layering.py's LAYERS, read with ast (the two tests stay independent)."""
    tree = ast.parse((ROOT / "tests" / "test_layering.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "LAYERS" for t in node.targets):
            return tuple(ast.literal_eval(node.value))
    raise AssertionError("tests/test_layering.py has no LAYERS")


# --- docs/layout.md's tree ---------------------------------------------------------------------

def _tree() -> str:
    text = (ROOT / "docs" / "layout.md").read_text()
    return text.split("<!-- TREE", 1)[1].split("```", 2)[1]


def _listed_paths(tree: str) -> list[Path]:
    """The first word of each line, joined to the folder above it: two spaces of indent a level."""
    paths, folders = [], [ROOT]
    for line in tree.splitlines():
        if not line.strip() or line.startswith(" " * 10):  # a continuation of the text column
            continue
        level = (len(line) - len(line.lstrip(" "))) // 2
        name = line.split()[0]
        del folders[level + 1:]
        paths.append(folders[level] / name)
        if name.endswith("/"):
            folders.append(folders[level] / name)
    return paths


def test_every_path_in_the_layout_tree_exists():
    paths = _listed_paths(_tree())
    assert len(paths) > 20
    missing = [str(p.relative_to(ROOT)) for p in paths if not p.exists()]
    assert missing == []


def test_every_module_and_script_is_in_the_layout_tree():
    tree = _tree()
    modules = sorted(p.name for p in PACKAGE.rglob("*.py") if not p.name.startswith("__"))
    scripts = sorted(p.name for p in (ROOT / "scripts").glob("*.sh"))
    benches = sorted(p.name for p in (ROOT / "bench").glob("*.py"))
    docs = sorted(p.name for p in DOCS)
    absent = [n for n in modules + scripts + benches + docs if not re.search(rf"\b{re.escape(n)}\b", tree)]
    assert absent == []


# --- the README ----------------------------------------------------------------------------------

def test_the_readme_is_read_in_ten_minutes():
    assert len(README.read_text().splitlines()) <= 200


def test_the_readme_keeps_the_two_commands():
    """CI (.ci/run) calls `make test`; a newcomer's first command is `make demo`."""
    text = README.read_text()
    assert re.search(r"^make demo\b", text, re.M) and re.search(r"^make test\b", text, re.M)
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_the_readme_links_every_docs_page_and_the_lab_log():
    linked = set(_links(README))
    unlinked = [str(p.relative_to(ROOT)) for p in [*DOCS, ROOT / "bench" / "RESULTS.md"] if p.resolve() not in linked]
    assert unlinked == []


# --- every reference resolves --------------------------------------------------------------------

def _links(page: Path) -> list[Path]:
    """The files a markdown page links to (relative links, resolved against its folder, anchors dropped)."""
    targets = [t.split("#", 1)[0] for t in re.findall(r"\]\(([^)\s]+)\)", page.read_text())]
    return [(page.parent / t).resolve() for t in targets if t and not re.match(r"[a-z]+:", t)]


@pytest.mark.parametrize("page", USER_DOCS, ids=lambda p: p.name)
def test_every_link_points_at_a_file(page):
    assert [str(target) for target in _links(page) if not target.exists()] == []


@cache
def _top_level_names(module: Path) -> dict[str, set[str]]:
    """{name defined at a module's top level: names defined in its body (a class's attributes)}."""
    names: dict[str, set[str]] = {}
    for node in ast.parse(module.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names[node.name] = _body_names(node) if isinstance(node, ast.ClassDef) else set()
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                names.update({t.id: set() for t in ast.walk(target) if isinstance(t, ast.Name)})
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update({(a.asname or a.name).split(".")[0]: set() for a in node.names})
    return names


def _body_names(cls: ast.ClassDef) -> set[str]:
    found = {n.name for n in cls.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    for node in cls.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            found.add(node.target.id)
        elif isinstance(node, ast.Assign):
            found |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return found


def _module_file(parts: list[str]) -> Path | None:
    base = ROOT.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def unresolved(dotted: str) -> str | None:
    """Why `fashionai.pkg.mod[.name[.attr]]` does not name a module, a top-level name of one, or an
    attribute of a top-level class; None when it does."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        module = _module_file(parts[:cut])
        if module is None:
            continue
        rest = parts[cut:]
        if not rest:
            return None
        names = _top_level_names(module)
        if rest[0] not in names:
            return f"{'.'.join(parts[:cut])} defines no {rest[0]}"
        if len(rest) == 2 and rest[1] not in names[rest[0]] and names[rest[0]]:
            return f"{'.'.join(parts[:cut + 1])} has no {rest[1]}"
        return None if len(rest) <= 2 else f"{dotted}: too deep to check"
    return "no such module"


def _references(text: str) -> list[str]:
    """Dotted names of the package: `fashionai.x.y...` anywhere, and backticked `layer.mod.name`."""
    found = re.findall(r"(?<![\w./-])fashionai(?:\.[A-Za-z_]\w*)+", text)
    layers = "|".join(_layers())
    for token in re.findall(rf"`((?:{layers})(?:\.[A-Za-z_]\w*)+)`", text):
        if token.rsplit(".", 1)[1] not in FILE_SUFFIXES:
            found.append(f"fashionai.{token}")
    return found


@pytest.mark.parametrize("page", USER_DOCS, ids=lambda p: p.name)
def test_every_module_and_function_named_in_the_docs_exists(page):
    text = page.read_text()
    paths = [p for p in re.findall(r"(?<![\w/.])fashionai/[\w/]+\.py\b", text) if not (ROOT / p).is_file()]
    refs = {ref: why for ref in _references(text) if (why := unresolved(ref))}
    assert (paths, refs) == ([], {})


def test_the_reference_check_sees_a_wrong_name():
    assert unresolved("fashionai.core.io") is None
    assert unresolved("fashionai.core.io.atomic_write") is None
    assert unresolved("fashionai.core.runinfo.RunInfo.read") is None
    assert unresolved("fashionai.core.io.no_such_function") is not None
    assert unresolved("fashionai.core.runinfo.RunInfo.no_such_method") is not None
    assert unresolved("fashionai.training.heads") is not None
    assert _references("`data.prepare`, `model.json`, fashionai.model.load_run.") == [
        "fashionai.model.load_run", "fashionai.data.prepare"]


# --- design.md and the layering test agree -------------------------------------------------------

def test_design_names_the_layers_in_the_layering_tests_order():
    text = (ROOT / "docs" / "design.md").read_text()
    table = re.findall(r"^\| \d+ \| `(\w+)` \|", text, re.M)
    assert tuple(table) == _layers()


def test_design_names_every_module():
    text = (ROOT / "docs" / "design.md").read_text()
    modules = sorted({p.stem for p in PACKAGE.rglob("*.py") if not p.name.startswith("__")})
    assert [m for m in modules if not re.search(rf"\b{re.escape(m)}\b", text)] == []


# --- user docs are timeless ----------------------------------------------------------------------

@pytest.mark.parametrize("page", [*USER_DOCS, ROOT / "data" / "README.md"], ids=lambda p: p.name)
def test_no_issue_numbers_or_dated_notes_in_user_docs(page):
    text = page.read_text()
    assert re.findall(r"\bissues?[- ]#?\d+|#\d{2,}\b|\b20\d\d-\d\d-\d\d\b", text, re.I) == []


def test_design_lists_the_tasks_and_classes_of_core_tasks():
    text = (ROOT / "docs" / "design.md").read_text()
    rows = re.findall(r"^\| `(\w+_labels)` \| (\d+) \| (.+) \|$", text, re.M)
    assert {task: (int(k), tuple(c.strip() for c in classes.split(", "))) for task, k, classes in rows} == {
        task: (len(classes), tuple(classes)) for task, classes in TASKS.items()}
