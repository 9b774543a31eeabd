"""The warehouse's DuckDB settings (``dbt_project/profiles.yml``) keep point-in-time joins
linear.

A model that takes, for every entity and day, the latest snapshot on or before that day is an
``asof`` join. DuckDB 2.0 rewrites an ``asof`` join whose probe side it estimates below
``asof_loop_join_threshold`` rows (64 by default) into a nested loop over every earlier
snapshot of the entity, then an aggregate: quadratic in the days. A row spine made with
``unnest(range(...))`` is always estimated small, so a 148-day world of 2,000 entities took
60 to 90 s in that join instead of 0.1 s. The profile turns the rewrite off.
"""

from __future__ import annotations

import duckdb
import yaml

from orchestration.settings import PROJECT_ROOT

PROFILE = PROJECT_ROOT / "dbt_project" / "profiles.yml"


def _profile_settings() -> dict[str, object]:
    """The DuckDB settings every dbt call applies (those not rendered from the environment)."""
    profile = yaml.safe_load(PROFILE.read_text())
    output = profile["blueprint"]["outputs"]["local"]
    return {k: v for k, v in output.get("settings", {}).items() if "{{" not in str(v)}


def test_a_point_in_time_join_over_a_day_spine_stays_an_asof_join() -> None:
    """The shape of a scoring population (``models/churn/marts/account_days.sql``): each
    entity's days from its first snapshot to the day before it ended, each with its latest
    snapshot."""
    with duckdb.connect() as con:
        for name, value in _profile_settings().items():
            con.execute(f"set {name} = {value!r}" if isinstance(value, str) else
                        f"set {name} = {value}")
        con.execute(
            "create table snapshots as select e as entity, d as day, e * d as value "
            "from range(200) t(e), range(100) u(d)"
        )
        con.execute(
            "create table endings as select e as entity, 50 as day from range(0, 200, 7) t(e)"
        )
        plan = "\n".join(row[1] for row in con.execute(
            """
            explain
            with covered as (select max(day) as last_day from snapshots),
            spans as (
                select
                    snapshots.entity,
                    min(snapshots.day) as first_day,
                    coalesce(min(endings.day) - 1, min(covered.last_day)) as last_day
                from snapshots
                cross join covered
                left join endings on snapshots.entity = endings.entity
                group by snapshots.entity
            ),
            spine as (
                select entity, unnest(range(first_day, last_day + 1)) as day
                from spans
                where first_day <= last_day
            )
            select spine.entity, spine.day, snapshots.value
            from spine
            asof left join snapshots
                on spine.entity = snapshots.entity and spine.day >= snapshots.day
            """
        ).fetchall())
    assert "Asof Join" in plan, plan
    assert "Nested Loop Join" not in plan, plan
