"""A day counts as loaded only when it holds a raw snapshot (issue 16: a run over a range of
days materialized every day of it, one without any delivery included, so the label source
looked loaded further than it was and label maturity was overstated)."""

from __future__ import annotations

from datetime import date

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq

from orchestration.defs.partitions import loaded_days, newest_loaded
from orchestration.lib.ingestion.declared import contracts_of
from orchestration.lib.ingestion.landing import raw_snapshot_path
from orchestration.settings import get_settings
from tests.support import usecase_scope

SCOPE = usecase_scope("fraud")
SOURCE = SCOPE.usecase.label.source


def test_a_day_without_a_delivery_is_not_loaded(blueprint_home):
    contract = contracts_of(SCOPE.usecase)[SOURCE]
    days = [date(2018, 4, d) for d in (1, 2, 3, 4)]
    for day in days[:2]:  # delivered and ingested; the 3rd and 4th had no delivery
        path = raw_snapshot_path(contract, get_settings().raw_dir, day)
        path.parent.mkdir(parents=True)
        pq.write_table(pa.table({"transaction_id": pa.array([], pa.string())}), path)
    with dg.instance_for_test() as instance:
        for day in days:  # one run over the range materializes every day of it
            instance.report_runless_asset_event(dg.AssetMaterialization(
                asset_key=SCOPE.key(f"raw_{SOURCE}"), partition=day.isoformat()))
        assert loaded_days(instance, SCOPE, SOURCE) == days[:2]
        assert newest_loaded(instance, SCOPE, SOURCE) == days[1]
