"""Helpers shared by tests (importable as ``tests.support``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from orchestration.settings import PROJECT_ROOT

BIN = Path(sys.executable).parent


def run_blueprint(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the real `blueprint` command against ``home``."""
    env = {**os.environ, "BLUEPRINT_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
    completed = subprocess.run(
        [str(BIN / "blueprint"), *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    if check and completed.returncode != 0:
        raise AssertionError(
            f"blueprint {' '.join(args)} exited {completed.returncode}\n"
            f"--- stdout\n{completed.stdout[-5000:]}\n--- stderr\n{completed.stderr[-10000:]}"
        )
    return completed
