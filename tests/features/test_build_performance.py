"""``dbt build`` over a raw zone the size of the default world stays well under a minute."""

from __future__ import annotations

import pytest

from tests.features.raw_world import dbt_build, read_table, write_large_raw_zone

BUILD_BUDGET_SECONDS = 60


@pytest.mark.slow
def test_dbt_build_of_a_default_size_world_stays_under_a_minute(
    pseudonymization_key_hex: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    home = tmp_path_factory.mktemp("default_size_world")
    write_large_raw_zone(home)  # 1.75 M payments, 183 days, 5 000 cards, 10 000 terminals

    run = dbt_build(home, pseudonymization_key_hex)

    assert run.returncode == 0, run.output[-5000:]
    assert run.seconds < BUILD_BUDGET_SECONDS, f"dbt build took {run.seconds:.1f} s"
    assert len(read_table(run.warehouse, "training_set")) == 1_750_000
