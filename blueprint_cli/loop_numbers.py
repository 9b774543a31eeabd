"""What the closed-loop scenario measures (:mod:`blueprint_cli.closed_loop` runs it).

The numbers (:func:`loop_numbers`) come from what the loop left behind: the reports' index, the
replay's output, the registry, and both champions scored in batch from the registry on the days
after the switch. The rows and their labels are the use case's declared ones.
"""

from __future__ import annotations

from datetime import date, timedelta

from blueprint_cli.closed_loop import LoopRun, Scenario

FIRST_BREACH_WITHIN = timedelta(days=2)
"""How soon after the drift starts a day's reports must show it (the first drifted day's traffic
is only partly the new pattern)."""


def report_numbers(run: LoopRun) -> dict[tuple[date, str], dict]:
    """(day, report kind) -> the report's headline numbers, from the reports' index."""
    from orchestration.lib.monitoring.report_index import read_index

    return {(e.day, e.kind): e.numbers for e in read_index(run.settings.reports_dir)}


def breached(index: dict[tuple[date, str], dict], day: date) -> bool:
    """Whether a day's drift reports cross the sensor's default thresholds."""
    drift = index[(day, "prediction_drift")]
    data = index[(day, "data_drift")]
    return bool(drift["score_drift"]) or data["drifted_share"] >= 0.5


def first_breach(scenario: Scenario, index: dict[tuple[date, str], dict]) -> date | None:
    """The first replayed day whose reports breach a threshold."""
    return next((day for day in scenario.held_days if breached(index, day)), None)


def realized_ap(
    index: dict[tuple[date, str], dict], version: str, first: date, end: date
) -> list[float]:
    """Realized AP of the mature days in [first, end) that ``version`` served."""
    return [
        n["average_precision"] for (day, kind), n in sorted(index.items())
        if kind == "performance" and first <= day < end
        and n.get("model_version") == version and n.get("average_precision") is not None
    ]


def ap_after_switch(run: LoopRun) -> tuple[float, float, int, int]:
    """AP of the first champion and of the drift's challenger on every row of the days after the
    switch, both scored in batch from the registry: (old, new, rows, positives)."""
    import duckdb
    from sklearn.metrics import average_precision_score

    from orchestration.lib.serving.scoring import load_scoring_model

    after_switch = run.scenario.steps()[run.scenario.switch_step + 1][0]
    with duckdb.connect(str(run.settings.warehouse_path), read_only=True) as con:
        rows = con.execute(labelled_rows_query(run), [after_switch]).df()
    label = rows[run.settings.usecase.label.column]
    old = load_scoring_model(run.first_champion, run.settings)
    new = load_scoring_model(run.challenger, run.settings)
    return (
        float(average_precision_score(label, old.score(rows))),
        float(average_precision_score(label, new.score(rows))),
        len(rows), int(label.sum()),
    )


def labelled_rows_query(run: LoopRun) -> str:
    """Every row of the features table from a day on (the one parameter), with its label: 1
    when the label source has staged its row id."""
    from orchestration.lib.features.feature_definitions import quote_identifier as quoted

    usecase = run.settings.usecase
    data = usecase.data
    _, labels = usecase.resolved_features().staged_inputs
    row_id = quoted(data.row_id)
    return (
        f"select f.*, (r.{row_id} is not null)::int as {quoted(usecase.label.column)} "
        f"from {quoted(data.features_table)} f left join "
        f"(select distinct {row_id} from {quoted(labels)}) r using ({row_id}) "
        f"where f.{quoted(data.partition_date)} >= ?"
    )


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def loop_numbers(run: LoopRun) -> dict:
    """What the scenario measures: the days from the drift to the first breach and to the
    switch, the realized AP of each champion, and both champions on the days after the
    switch."""
    scenario, index = run.scenario, report_numbers(run)
    breach = first_breach(scenario, index)
    old, new = run.first_champion, run.challenger
    switched_after = scenario.steps()[run.switches[0][0]][1]
    ap_old, ap_new, rows, frauds = ap_after_switch(run)
    before = realized_ap(index, old, scenario.first_held, scenario.drift_day)
    decayed = realized_ap(index, old, scenario.drift_day, date.max)
    after = realized_ap(index, new, scenario.drift_day, date.max)
    return {
        "drift_day": scenario.drift_day,
        "first_breach": breach,
        "days_to_breach": None if breach is None else (breach - scenario.drift_day).days,
        "switched_after": switched_after,
        "days_to_switch": (switched_after - scenario.drift_day).days,
        "switches": len(run.switches),
        "old_champion": old,
        "challenger": new,
        "realized_ap_before_drift": (_mean(before), len(before)),
        "realized_ap_after_drift": (_mean(decayed), len(decayed)),
        "realized_ap_challenger": (_mean(after), len(after)),
        "batch_ap_after_switch_old": ap_old,
        "batch_ap_after_switch_new": ap_new,
        "rows_after_switch": rows,
        "frauds_after_switch": frauds,
        "prober_requests": run.prober.sent,
        "prober_failures": len(run.prober.failures),
        "seconds": run.seconds,
    }


def summary(numbers: dict) -> str:
    """One paragraph a person reads."""
    def ap(key: str) -> str:
        mean, days = numbers[key]
        return f"{mean:.3f} ({days} days)"

    return (
        f"drift {numbers['drift_day']}; first breach {numbers['first_breach']} "
        f"(+{numbers['days_to_breach']} days); sensor fired and {numbers['challenger']} "
        f"promoted after {numbers['switched_after']} (+{numbers['days_to_switch']} days); "
        f"realized AP: old champion before the drift {ap('realized_ap_before_drift')}, after "
        f"it {ap('realized_ap_after_drift')}, new champion {ap('realized_ap_challenger')}; "
        f"scored in batch on the days after the switch: old "
        f"{numbers['batch_ap_after_switch_old']:.3f}, new "
        f"{numbers['batch_ap_after_switch_new']:.3f}; {numbers['prober_failures']} failed "
        f"of {numbers['prober_requests']} prober requests"
    )
