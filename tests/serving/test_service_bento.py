"""The scoring service's Bentos: the pins agree with the lock, and each online use case's Bento
builds offline from the one service code, named after it and set to run it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from orchestration.lib.core.usecase import load_usecase, usecase_names
from orchestration.lib.serving.bento import BENTOFILE, SERVICE, bentofile_for
from orchestration.settings import NO_TELEMETRY_ENV, PROJECT_ROOT, USECASE_ENV, USECASES_DIR


def online_usecases() -> list[str]:
    return [name for name in usecase_names(USECASES_DIR)
            if load_usecase(name, USECASES_DIR, environ={}).serving.online]


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


def test_each_online_use_case_gets_its_own_bento_of_the_one_service() -> None:
    assert online_usecases(), "no use case is served online"
    for name in online_usecases():
        bentofile = bentofile_for(name, ["model:v1"])
        assert bentofile["name"] == f"{name}_scorer"
        assert bentofile["service"] == SERVICE
        assert bentofile["envs"] == [{"name": USECASE_ENV, "value": name}]
        assert bentofile["models"] == ["model:v1"]
        assert "orchestration/usecases/*.yaml" in bentofile["include"]


@pytest.mark.slow
def test_bento_builds_offline_with_the_service_and_the_code_it_imports(tmp_path: Path) -> None:
    usecase = online_usecases()[0]
    spec = tmp_path / "bentofile.yaml"
    spec.write_text(yaml.safe_dump(bentofile_for(usecase)))
    env = {**os.environ, **NO_TELEMETRY_ENV, "BENTOML_HOME": str(tmp_path / "bentoml"),
           USECASE_ENV: usecase}
    built = subprocess.run(
        [sys.executable, "-m", "bentoml", "build", "-f", str(spec), "-o", "tag",
         str(PROJECT_ROOT)],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    tag = built.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    name, version = tag.split(":")
    assert name == f"{usecase}_scorer"
    bento = tmp_path / "bentoml" / "bentos" / name / version
    src = bento / "src"
    assert (src / "bentos" / "scorer" / "service.py").is_file()
    assert (src / "orchestration" / "lib" / "serving" / "online_features.py").is_file()
    assert (src / "orchestration" / "usecases" / f"{usecase}.yaml").is_file()
    assert {"name": USECASE_ENV, "value": usecase, "stage": "all"} in (
        yaml.safe_load((bento / "bento.yaml").read_text()).get("envs") or []
    )
