"""The repository keeps the shape the design fixes."""

import ast
import subprocess
import sys

from orchestration.settings import PROJECT_ROOT

TOP_LEVEL = ["orchestration", "dbt_project", "bentos", "expectations", "workspace.yaml", "tests",
             "pyproject.toml", "README.md", "simulator", "blueprint_cli", "Makefile"]


def test_top_level_layout():
    missing = [name for name in TOP_LEVEL if not (PROJECT_ROOT / name).exists()]
    assert not missing


def _imported_modules(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


def test_orchestration_never_imports_the_simulator_statically():
    offenders = [
        f"{path.relative_to(PROJECT_ROOT)} imports {module}"
        for path in (PROJECT_ROOT / "orchestration").rglob("*.py")
        for module in _imported_modules(path)
        if module == "simulator" or module.startswith(("simulator.", "blueprint_cli"))
    ]
    assert not offenders


def test_loading_the_definitions_does_not_load_the_simulator():
    code = (
        "import sys, orchestration.definitions as d; "
        "assert d.fraud is not None; "
        "leaked = [m for m in sys.modules if m == 'simulator' or m.startswith('simulator.')]; "
        "print(leaked); sys.exit(1 if leaked else 0)"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
