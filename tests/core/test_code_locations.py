"""Each declared use case is a Dagster code location of its own, scoped in the shared instance,
and its automation stays quiet while it has no data."""

from __future__ import annotations

from datetime import datetime

import dagster as dg
import pytest
import yaml

from orchestration.definitions import definitions_for
from orchestration.lib.core.usecase import load_usecase, usecase_names
from orchestration.settings import PROJECT_ROOT, USECASES_DIR, get_settings

USECASES = usecase_names(USECASES_DIR)


def test_the_workspace_has_one_code_location_per_declared_use_case():
    workspace = yaml.safe_load((PROJECT_ROOT / "workspace.yaml").read_text())
    locations = {
        entry["python_module"]["location_name"]: entry["python_module"]
        for entry in workspace["load_from"]
    }
    assert sorted(locations) == USECASES
    for name, location in locations.items():
        assert location["module_name"] == "orchestration.definitions"
        assert location["attribute"] == name


def test_the_module_refuses_an_attribute_that_is_no_use_case():
    import orchestration.definitions as module

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        module.nope  # noqa: B018


@pytest.mark.parametrize("name", USECASES)
def test_every_key_and_pool_is_the_use_cases_own(name: str):
    defs = definitions_for(name)
    graph = defs.resolve_asset_graph()
    keys = graph.get_all_asset_keys()
    assert keys and all(key.path[0] == name and len(key.path) == 2 for key in keys)
    for key in keys:
        node = graph.get(key)
        assert node.pools <= {f"warehouse_{name}"}, (key, node.pools)
    checks = graph.asset_check_keys
    assert checks and all(check.asset_key.path[0] == name for check in checks)


@pytest.mark.parametrize("name", USECASES)
def test_every_feature_model_links_to_its_page_in_the_feature_catalog(name: str):
    settings = get_settings(name)
    graph = definitions_for(name).resolve_asset_graph()
    table = load_usecase(name, USECASES_DIR, environ={}).data.features_table
    links = {
        key.path[1]: node.metadata["feature_catalog"].url
        for key in graph.get_all_asset_keys()
        if "feature_catalog" in (node := graph.get(key)).metadata
    }
    assert links[table] == (
        f"http://127.0.0.1:{settings.reports_port}/{name}/feature_catalog/index.html"
        f"#!/model/model.blueprint.{table}"
    )
    assert all(f"/{name}/feature_catalog/" in url for url in links.values())


def test_no_two_use_cases_share_an_asset_key():
    seen: dict[dg.AssetKey, str] = {}
    for name in USECASES:
        for key in definitions_for(name).resolve_asset_graph().get_all_asset_keys():
            assert key not in seen, f"{key} is both {seen[key]}'s and {name}'s"
            seen[key] = name


@pytest.mark.parametrize("name", USECASES)
def test_a_use_case_with_no_data_has_quiet_schedules_and_sensors(blueprint_home, name: str):
    """On an empty home every schedule and sensor skips, and says why: none fails and none
    launches a run that could only fail."""
    defs = definitions_for(name)
    when = datetime(2018, 6, 3, 5, 0)  # a Sunday: the weekly retraining is due
    with dg.instance_for_test() as instance:
        for schedule in defs.schedules:
            with dg.build_schedule_context(
                instance=instance, scheduled_execution_time=when
            ) as context:
                result = schedule(context)
            assert isinstance(result, dg.SkipReason), (schedule.name, result)
            assert result.skip_message, schedule.name
        for sensor in defs.sensors:
            if isinstance(sensor, dg.RunStatusSensorDefinition):
                continue  # fires on a failed run, not on a tick
            with dg.build_sensor_context(instance=instance) as context:
                result = sensor(context)
            assert isinstance(result, dg.SkipReason), (sensor.name, result)
            assert result.skip_message, sensor.name
