"""Each home keeps the folders of its last dbt calls, and only those."""

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
