"""A copy of the project for the tutorials (docs/EXTENDING.md followed literally): the tracked
files copied, a use case's new files added, the copy's own `blueprint` command run in a
temporary home, and what a new use case may not change."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from orchestration.settings import PROJECT_ROOT

PIPELINE = ("orchestration/", "bentos/", "blueprint_cli/")
"""What a new use case must not change."""
BUILD_OUTPUTS = ("dbt_project/target/", "dbt_project/logs/", "__pycache__/")
CLI = "from blueprint_cli.main import app; app()"
"""The copy's `blueprint` command (its code, not this checkout's), run with ``python -c``."""


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def copy_project(target: Path) -> dict[str, str]:
    """The files ``git ls-files`` lists, copied; returns their digests."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=PROJECT_ROOT, capture_output=True, check=True
    ).stdout.decode().split("\0")
    originals = {}
    for name in listed:
        source = PROJECT_ROOT / name
        if not name or not source.is_file():  # deleted in the work tree, not yet committed
            continue
        data = source.read_bytes()
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        (target / name).write_bytes(data)
        (target / name).chmod(source.stat().st_mode)
        originals[name] = digest(data)
    return originals


def add_use_case(project: Path, files: Mapping[str, str], suites: Mapping[str, dict],
                 workspace_entry: str) -> None:
    """What docs/EXTENDING.md says to add: the declaration, the code location, the dbt models
    and the GX suites."""
    for name, text in files.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    for name, suite in suites.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(json.dumps(suite, indent=2) + "\n")
    with (project / "workspace.yaml").open("a") as workspace:
        workspace.write(workspace_entry)


def project_env(project: Path, home: Path, **extra: str) -> dict[str, str]:
    """The environment the copy runs in: its code first, a temporary home."""
    env = {**os.environ, "BLUEPRINT_HOME": str(home), "DAGSTER_HOME": str(home / "dagster"),
           "PYTHONPATH": str(project), **extra}
    env.pop("BLUEPRINT_USECASE", None)
    return env


def run(project: Path, env: dict[str, str], *args: str, cwd: Path | None = None
        ) -> subprocess.CompletedProcess:
    """Run a command in the copy; fails with its output unless it exits 0."""
    completed = subprocess.run(
        list(args), cwd=cwd or project, env=env, capture_output=True, text=True,
        stdin=subprocess.DEVNULL,
    )
    assert completed.returncode == 0, (
        f"{' '.join(args)} exited {completed.returncode}\n"
        f"--- stdout\n{completed.stdout[-5000:]}\n--- stderr\n{completed.stderr[-10000:]}"
    )
    return completed


def blueprint(project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """The copy's `blueprint` command."""
    return run(project, env, sys.executable, "-c", CLI, *args)


def dbt_parse(project: Path, env: dict[str, str]) -> None:
    """"make setup": dbt's manifest, as the Makefile builds it."""
    run(project, env, str(Path(sys.executable).parent / "dbt"), "parse", "--profiles-dir", ".",
        "--quiet", cwd=project / "dbt_project")


def imported_from(project: Path, env: dict[str, str]) -> list[str]:
    """Where the copy's Python imports ``orchestration`` and ``blueprint_cli`` from."""
    return run(
        project, env, sys.executable, "-c",
        "import blueprint_cli, orchestration; print(orchestration.__file__); "
        "print(blueprint_cli.__file__)",
    ).stdout.split()


def files_in(project: Path) -> set[str]:
    """The copy's files but build outputs, by path in the project."""
    found = {path.relative_to(project).as_posix() for path in project.rglob("*")
             if path.is_file()}
    return {name for name in found
            if not any(part in f"/{name}" for part in (f"/{o}" for o in BUILD_OUTPUTS))}


def changed_files(project: Path, originals: Mapping[str, str]) -> list[str]:
    """The copied files whose content changed since."""
    return sorted(name for name, sha in originals.items()
                  if digest((project / name).read_bytes()) != sha)
