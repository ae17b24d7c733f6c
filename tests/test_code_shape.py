"""The code stays easy to change (docs/architecture.md): no function longer than a screen, and one file per concept,
so a search for a concept finds one file."""

import ast
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ["nexus_core", "nexus_resources", "nexus_assets", "nexus_sensors", "nexus_defs", "nexus_cli", "serving"]
MAX_LINES = 80
# Names every domain has by Dagster's habit (one `assets.py` per domain folder).
SHARED_NAMES = {"__init__.py", "assets.py"}


def _sources(*roots: str) -> list[Path]:
    return sorted(path for root in roots for path in (REPO / root).rglob("*.py"))


def test_no_function_is_longer_than_80_lines():
    long = [
        f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path in _sources(*PACKAGES, "benchmarks", "tests")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno + 1 > MAX_LINES
    ]
    assert not long, f"split these into smaller functions (at most {MAX_LINES} lines each): {long}"


def test_each_module_name_belongs_to_one_file():
    files = defaultdict(list)
    for path in _sources(*PACKAGES):
        if path.name not in SHARED_NAMES:
            files[path.name].append(str(path.relative_to(REPO)))
    shared = {name: paths for name, paths in files.items() if len(paths) > 1}
    assert not shared, f"name each file by its role, so a search finds one: {shared}"
