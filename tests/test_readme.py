"""The README's layout tree names real files, and every module of the package is in it."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _tree() -> str:
    text = (ROOT / "README.md").read_text()
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


def test_every_path_in_the_readme_tree_exists():
    paths = _listed_paths(_tree())
    assert len(paths) > 20
    missing = [str(p.relative_to(ROOT)) for p in paths if not p.exists()]
    assert missing == []


def test_every_module_and_script_is_in_the_readme_tree():
    tree = _tree()
    modules = sorted(p.name for p in (ROOT / "fashionai").rglob("*.py") if not p.name.startswith("__"))
    scripts = sorted(p.name for p in (ROOT / "scripts").glob("*.sh"))
    benches = sorted(p.name for p in (ROOT / "bench").glob("*.py"))
    absent = [n for n in modules + scripts + benches if not re.search(rf"\b{re.escape(n)}\b", tree)]
    assert absent == []
