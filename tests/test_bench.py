"""The benchmark scripts (`make bench`, `make bench-score`) are not run by the suite (they measure
for minutes), so at least every name they import from the package must exist: a restructure once
left two of them importing names that had moved."""

import ast
import importlib
import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _package_imports(script: Path) -> list[tuple[str, str]]:
    """(module, name) of every `from fashionai... import name` in `script`, at any depth."""
    tree = ast.parse(script.read_text())
    return [(node.module, alias.name) for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
            and node.module and node.module.split(".")[0] == "fashionai" for alias in node.names]


@pytest.mark.parametrize("script", sorted(BENCH.glob("*.py")), ids=lambda p: p.name)
def test_every_name_a_bench_script_imports_exists(script):
    for module, name in _package_imports(script):
        imported = importlib.import_module(module)
        assert hasattr(imported, name) or importlib.util.find_spec(f"{module}.{name}"), (script.name, module, name)


def test_the_check_sees_a_moved_name(tmp_path):
    script = tmp_path / "old.py"
    script.write_text("def f():\n    from fashionai.data import MEAN\n")
    assert _package_imports(script) == [("fashionai.data", "MEAN")]
    assert not hasattr(importlib.import_module("fashionai.data"), "MEAN")


def _common():
    spec = importlib.util.spec_from_file_location("bench_common", BENCH / "common.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_paired_ratios_alternate_the_order_and_cancel_a_drift():
    """A machine that slows down by 10% per measurement: single runs far apart mislead, neighbours do not."""
    common, calls = _common(), []

    def measured(name: str, work: float):
        def run() -> float:
            calls.append(name)
            return work * 0.9 ** (len(calls) - 1)
        return run

    ratios = common.paired_ratios(measured("base", 1.0), measured("cand", 2.0), 4)
    assert calls == ["base", "cand", "cand", "base", "base", "cand", "cand", "base"]
    assert ratios == pytest.approx([1.8, 2 / 0.9, 1.8, 2 / 0.9])  # order alternates: the drift averages out
    assert common.describe_ratios(ratios) == "median 2.01x over 4 pairs: 1.80, 2.22, 1.80, 2.22"
    assert common.describe_ratios([float("nan")]) == "not measured"
