"""Each home keeps the folders of its last dbt calls, and only those."""

import functools
import os
from pathlib import Path

from orchestration.defs.features.assets import prune_dbt_calls


def test_only_the_newest_calls_are_kept(tmp_path: Path) -> None:
    calls = []
    for age in range(12):  # call 0 is the newest
        folder = tmp_path / f"feature_models-run{age}"
        (folder / "compiled").mkdir(parents=True)
        (folder / "dbt.log").write_text("log")
        stamp = 1_700_000_000 - age * 60
        os.utime(folder, (stamp, stamp))
        calls.append(folder)
    (tmp_path / "partial_parse.msgpack").write_bytes(b"state")  # not a call: never pruned

    gone = prune_dbt_calls(tmp_path, keep=10)

    assert sorted(gone) == sorted(calls[10:])
    assert sorted(p for p in tmp_path.iterdir() if p.is_dir()) == sorted(calls[:10])
    assert (tmp_path / "partial_parse.msgpack").exists()
    assert prune_dbt_calls(tmp_path, keep=10) == []  # again: nothing more to do


def test_the_dbt_resource_skips_what_dagster_dbt_pays_on_every_call(monkeypatch) -> None:
    """`BlueprintDbtCliResource` replaces two private members of dagster-dbt's resource; were
    they renamed by a new version, the overrides would silently stop saving 2 to 3 s a call."""
    import subprocess

    from dagster_dbt import DbtCliResource

    from orchestration.defs import resources

    assert isinstance(vars(DbtCliResource)["_cli_version"], functools.cached_property)
    assert callable(vars(DbtCliResource)["_initialize_dbt_core_adapter"])

    dbt = resources.resources_for_env("fraud", "local")["dbt"]
    assert isinstance(dbt, resources.BlueprintDbtCliResource)
    printed = subprocess.check_output([dbt.dbt_executable, "--version"], text=True)
    resources.dbt_version.cache_clear()

    def no_subprocess(*args, **kwargs):
        raise AssertionError(f"a subprocess was started: {args}")

    monkeypatch.setattr(subprocess, "check_output", no_subprocess)
    assert f"installed: {dbt._cli_version}" in printed  # this environment's dbt, not asked
    assert dbt._initialize_dbt_core_adapter(["build"]) is None
