"""The packages depend one way: the core on no other NexusML package, serving on the core alone, assets and
sensors never on each other or on tooling, the definitions root (`nexus_defs`) above the domains it assembles, and
no cycles between top-level packages (docs/architecture.md)."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ["nexus_core", "nexus_resources", "nexus_assets", "nexus_sensors", "nexus_defs", "nexus_cli", "serving"]
# What each package may import of the others.
ALLOWED = {
    "nexus_core": set(),
    "serving": {"nexus_core"},
    "nexus_resources": {"nexus_core"},
    "nexus_assets": {"nexus_core", "nexus_resources", "serving"},
    "nexus_sensors": {"nexus_core", "nexus_resources"},
    "nexus_defs": {"nexus_core", "nexus_resources", "nexus_assets", "nexus_sensors"},
    "nexus_cli": {"nexus_core", "nexus_resources", "nexus_assets", "nexus_sensors", "nexus_defs", "serving"},
}


def _imports(package: str) -> dict[str, set[str]]:
    """Each other NexusML package `package` imports, with the files that import it."""
    found: dict[str, set[str]] = {}
    for path in (REPO / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top in PACKAGES and top != package:
                    found.setdefault(top, set()).add(str(path.relative_to(REPO)))
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_imports_only_what_its_layer_allows(package):
    forbidden = {other: files for other, files in _imports(package).items() if other not in ALLOWED[package]}
    assert not forbidden, f"{package} may not import {sorted(forbidden)}: {forbidden}"


def test_no_cycles_between_top_level_packages():
    graph = {package: set(_imports(package)) for package in PACKAGES}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in graph[start])

    cycles = [package for package in PACKAGES if reaches(package, package, {package})]
    assert not cycles, f"import cycles through {cycles}: {graph}"
