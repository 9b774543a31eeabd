"""The persistent Dagster instance under BLUEPRINT_HOME/dagster."""

from __future__ import annotations

from pathlib import Path

from orchestration.lib.core.atomic import atomic_write_bytes

INSTANCE_YAML = """\
# Written by Blueprint (orchestration/lib/core/instance.py); edit the code, not this file.
# Every pool holds one step at a time: a use case's warehouse file accepts a single writer.
concurrency:
  pools:
    default_limit: 1
# The daemon's run monitoring ends runs whose worker died and frees the pool slots of ended
# runs; a run the blueprint command executes in its own process is ended by the next command
# (blueprint_cli/runs.py: end_abandoned_runs).
run_monitoring:
  enabled: true
  free_slots_after_run_end_seconds: 60
telemetry:
  enabled: false
"""


def ensure_instance(dagster_home: Path) -> Path:
    """Create (or refresh) the instance's dagster.yaml; safe to call every time."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    config = dagster_home / "dagster.yaml"
    if not config.exists() or config.read_text() != INSTANCE_YAML:
        atomic_write_bytes(config, INSTANCE_YAML.encode())
    return config
