"""The scoring service's Bento: its pins agree with the lock, and it builds offline."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from orchestration.lib.serving.process import SERVICE
from orchestration.settings import NO_TELEMETRY_ENV, PROJECT_ROOT

BENTOFILE = PROJECT_ROOT / "bentos" / "fraud_scorer" / "bentofile.yaml"


def test_bento_pins_agree_with_the_lock_and_name_the_launched_service() -> None:
    bentofile = yaml.safe_load(BENTOFILE.read_text())
    locked = dict(
        line.strip().split("==", 1)
        for line in (PROJECT_ROOT / "requirements.lock").read_text().splitlines()
        if "==" in line and not line.lstrip().startswith("#")
    )
    pins = dict(p.split("==", 1) for p in bentofile["python"]["packages"])
    assert {name: locked.get(name) for name in pins} == pins
    assert bentofile["service"] == SERVICE


@pytest.mark.slow
def test_bento_builds_offline_with_the_service_and_the_code_it_imports(tmp_path: Path) -> None:
    env = {**os.environ, **NO_TELEMETRY_ENV, "BENTOML_HOME": str(tmp_path / "bentoml")}
    built = subprocess.run(
        [sys.executable, "-m", "bentoml", "build", "-f", str(BENTOFILE.relative_to(PROJECT_ROOT)),
         "-o", "tag"],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    tag = built.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    name, version = tag.split(":")
    src = tmp_path / "bentoml" / "bentos" / name / version / "src"
    assert (src / "bentos" / "fraud_scorer" / "service.py").is_file()
    assert (src / "orchestration" / "lib" / "serving" / "online_features.py").is_file()
