"""The closed-loop driver's plan: which `blueprint replay` commands play a scenario's steps, and
how their output is cut back into steps (the switch's step is read from it)."""

from datetime import date, timedelta
from itertools import pairwise

from blueprint_cli.closed_loop import FULL, TINY, step_outputs


def test_every_step_is_played_once_in_order_by_as_few_commands_as_step_lengths_allow() -> None:
    for scenario in (TINY, FULL):
        steps = scenario.steps()
        assert steps[0][0] == scenario.first_held and steps[-1][1] == scenario.last_day
        assert all(b[0] == a[1] + timedelta(days=1) for a, b in pairwise(steps))
        assert steps[scenario.switch_step][1] == scenario.fire_day
        played = []
        for first, last, step_days in scenario.invocations():
            days = (last - first).days + 1
            played += [
                (first + timedelta(days=i), min(last, first + timedelta(days=i + step_days - 1)))
                for i in range(0, days, step_days)
            ]
        assert played == steps, scenario.name
    assert TINY.invocations() == [(TINY.first_held, TINY.last_day, 1)]  # a day at a time
    assert len(TINY.steps()) == TINY.hold


def test_a_replay_output_is_cut_at_each_step_line_with_its_time() -> None:
    output = (
        "Retrained first (a reason); champion v0\n"
        "2018-04-17 in 16.3 s: scored 1,889 payments (27 alerts, 0 refused), sent 7 fraud "
        "reports; retraining: no (no threshold breached)\n"
        "2018-04-18..2018-04-20 in 41.0 s: scored 5,000 payments (3 alerts, 1 refused), sent 2 "
        "fraud reports; retraining: ran (drift)\n"
        "  refused t-9: amount is not a number\n"
        "  champion switched v1 -> v2; the service serves it\n"
        "Replayed 2018-04-17 .. 2018-04-20. Reports: /home/reports/index.html\n"
    )
    steps = step_outputs(output)
    assert [(span, seconds) for span, seconds, _ in steps] == [
        ("2018-04-17", 16.3), ("2018-04-18..2018-04-20", 41.0),
    ]
    assert "champion switched" not in steps[0][2]
    assert "champion switched v1 -> v2" in steps[1][2]
    assert step_outputs("Every held-back day has been delivered: nothing to replay.\n") == []
    assert date.fromisoformat(steps[1][0].split("..")[1]) == date(2018, 4, 20)
