"""The closed loop, end to end, through the real `blueprint` command, Dagster and the service.

A small world whose fraud changes on day 17 (card-testing bursts and a spending shift) is
simulated with its last 12 days held back. The first 16 days are materialized (a champion is
trained and promoted), the scoring service starts, then one `blueprint replay` lives the held
days one at a time (the driver is `blueprint_cli/closed_loop.py`): every payment of the day
scored over HTTP in time order, the fraud reports sent as filed, the day's files delivered, then
the pipeline run for that day and the retraining sensor evaluated. Labels arrive up to 2 days
late. The test asserts each step of the loop: drift seen in the reports within two days of the
drift day and not before, the served features equal to the offline ones, the sensor firing with
its reason once the newest mature training window holds post-drift days, a challenger trained
and promoted, the service switching without one failed request (a prober sends payments the
whole time), and the new champion beating the old one on the days after the switch (both
scored in batch from the registry).

The assertions hold for both scenarios: CI's tiny one and `make test-slow`'s full-size one, where
drift keeps growing, so the sensor may retrain again after the first switch (each later switch
must be logged in order too), and where more days are replayed than reports are kept as HTML.
"""

from __future__ import annotations

import os
from datetime import date, timedelta

import dagster as dg
import pytest
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from blueprint_cli import closed_loop, loop_numbers
from blueprint_cli.closed_loop import SERVING
from blueprint_cli.loop_numbers import FIRST_BREACH_WITHIN, breached
from orchestration.lib.monitoring.report_index import REPORT_KINDS, read_index, report_path
from orchestration.lib.registry import registry
from orchestration.lib.serving.process import free_port
from tests import browser
from tests.e2e.e2e_world import instance
from tests.support import run_blueprint

pytestmark = [pytest.mark.slow, pytest.mark.loop]

SCENARIO = closed_loop.SCENARIOS[os.environ.get("BLUEPRINT_CLOSED_LOOP", "tiny")]
FIRST_HELD, DRIFT_DAY, HOLD = SCENARIO.first_held, SCENARIO.drift_day, SCENARIO.hold
STEPS = SCENARIO.steps()
SWITCH_STEP = SCENARIO.switch_step
MAX_REPORT_DELAY = SCENARIO.max_report_delay


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("closed-loop") / "home"
    environment = closed_loop.scenario_environment(SCENARIO, home, free_port(), free_port())
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environment.items():
            patch.setenv(name, value)
        run = closed_loop.run_loop(SCENARIO, log=print)
        print(f"closed loop ({SCENARIO.name}): {run.seconds:.0f} s in all")
        yield run


@pytest.fixture(scope="module")
def numbers(loop) -> dict:
    """What the loop measures (both champions scored in batch among them), computed once."""
    return loop_numbers.loop_numbers(loop)


def _index(loop) -> dict[tuple[date, str], dict]:
    return loop_numbers.report_numbers(loop)


def test_every_replayed_day_has_its_reports_and_no_skew(loop):
    index, settings = _index(loop), loop.settings
    first_kept = SCENARIO.last_day - timedelta(days=settings.report_keep_days - 1)
    entries = {(e.day, e.kind): e for e in read_index(settings.reports_dir)}
    for offset in range(HOLD):
        day = FIRST_HELD + timedelta(days=offset)
        for kind in ("data_drift", "prediction_drift"):
            assert (day, kind) in index, f"no {kind} report for {day}"
            html = report_path(settings.reports_dir, day, kind)
            if day >= first_kept:
                assert html.exists(), f"the {kind} report of {day} is gone"
            else:  # older than the keep window: pruned, its numbers kept
                assert not html.exists() and entries[(day, kind)].html is None, html
    matured = SCENARIO.last_day - timedelta(days=MAX_REPORT_DELAY)
    assert (matured, "performance") in index
    assert (matured + timedelta(days=1), "performance") not in index  # labels not mature yet
    assert "index.html" in {p.name for p in loop.settings.reports_dir.iterdir()}
    checks = instance(loop.home).event_log_storage.get_latest_asset_check_execution_by_key(
        [dg.AssetCheckKey(dg.AssetKey(["fraud", "scored_traffic"]), "training_serving_skew")]
    )
    evaluation = checks[
        dg.AssetCheckKey(dg.AssetKey(["fraud", "scored_traffic"]), "training_serving_skew")
    ]
    assert evaluation.status.value == "SUCCEEDED"
    metadata = evaluation.evaluation.metadata  # type: ignore[union-attr]
    assert metadata["compared"].value > 1000 and metadata["mismatched"].value == 0


def test_each_report_is_linked_from_its_materialization(loop):
    settings = loop.settings
    for kind in REPORT_KINDS:
        event = instance(loop.home).get_latest_materialization_event(
            dg.AssetKey(["fraud", f"{kind}_report"])
        )
        metadata = event.asset_materialization.metadata  # type: ignore[union-attr]
        url = metadata["report"].value
        assert url.startswith(f"http://127.0.0.1:{settings.reports_port}/")
        # the server serves every use case's reports: the path starts with the use case
        assert (settings.reports_root / url.split("/", 3)[3]).exists()
        assert url.split("/", 3)[3].startswith("fraud/")
        assert metadata["traffic_rows"].value > 0


def test_drift_is_seen_soon_after_the_drift_day_and_not_before(loop):
    index = _index(loop)
    held = SCENARIO.held_days
    assert not [day for day in held if day < DRIFT_DAY and breached(index, day)]
    first = loop_numbers.first_breach(SCENARIO, index)
    assert first is not None and first <= DRIFT_DAY + FIRST_BREACH_WITHIN, (
        f"drift from {DRIFT_DAY}, first breach {first}"
    )


def test_the_sensor_fired_with_its_reason_and_the_challenger_was_promoted(loop):
    runs = instance(loop.home).get_run_records(
        dg.RunsFilter(job_name="training_job", tags={"blueprint/trigger": "retraining_sensor"}),
        ascending=True,
    )
    assert runs, "the retraining sensor launched no training run"
    assert all(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    tags = runs[0].dagster_run.tags  # the drift's retraining; a growing drift may fire again
    first_breach = date.fromisoformat(tags["blueprint/first_breach"])
    assert DRIFT_DAY <= first_breach <= DRIFT_DAY + FIRST_BREACH_WITHIN
    assert (int(tags["blueprint/post_drift_training_days"])
            >= SCENARIO.declaration.monitoring.min_post_drift_days)
    assert tags["blueprint/thresholds"]

    settings, challenger = loop.settings, loop.challenger
    step, old, _ = loop.switches[0]
    assert old == loop.first_champion and challenger != old
    promotion = [e for e in registry.history(challenger, settings) if e.event == "promoted"]
    assert promotion and "average_precision gain" in promotion[0].reason
    # the switch happened once the window held post-drift days, not before
    assert step == SWITCH_STEP, f"first switch in replay step {step}, expected {SWITCH_STEP}"
    # any later switch starts from the champion the previous one installed
    chain = [loop.first_champion, *(new for _, _, new in loop.switches)]
    assert [old for _, old, _ in loop.switches] == chain[:-1]
    assert registry.champion_version(settings) == chain[-1]


def test_the_service_switched_without_a_failed_request(loop):
    prober = loop.prober
    assert prober.sent > 50
    assert prober.failures == []
    # the service logged each switch, with both versions, in the replay's order
    expected = [(new, old) for _, old, new in loop.switches]
    logged = [(new, old) for new, old in SERVING.findall(loop.log) if old != "None"]
    assert expected and logged == expected, logged  # "(was None)": the service's start
    # and the prober was answered by each champion in turn, never an older one again
    served = [v for i, v in enumerate(prober.versions) if i == 0 or v != prober.versions[i - 1]]
    assert served[0] == loop.first_champion and served[-1] == expected[-1][0]
    assert len(served) == len(set(served)), served


def test_the_new_champion_beats_the_old_one_on_the_days_after_the_switch(numbers):
    # both scored in batch from the registry on every payment of the days after the switch;
    # the new one is the drift's challenger (a later retraining may have learned these days)
    ap_old, ap_new = numbers["batch_ap_after_switch_old"], numbers["batch_ap_after_switch_new"]
    rows, frauds = numbers["rows_after_switch"], numbers["frauds_after_switch"]
    print(f"AP after the switch ({rows} payments, {frauds} frauds): old {ap_old:.3f}, "
          f"new {ap_new:.3f}")
    assert frauds > 10
    assert ap_new > ap_old


def test_the_loops_numbers(numbers):
    """What the scenario measures (printed with -s): days from the drift to the first breach
    and to the switch, and the realized AP of the days each champion served."""
    assert numbers["realized_ap_after_drift"][1] and numbers["realized_ap_challenger"][1], (
        "each champion has mature days it served"
    )
    assert numbers["switched_after"] == SCENARIO.fire_day
    print(f"\nclosed loop ({SCENARIO.name}): {loop_numbers.summary(numbers)}")


def test_the_benchmark_section_renders_this_run(loop, numbers):
    """Section 8 of the benchmarks, from this run: the quick benchmark does not replay the loop
    (CI does it here), so its tables are checked here."""
    from benchmarks.closed_loop import section

    rendered = section(loop, numbers, peak_bytes=0)
    markdown = rendered.markdown(loop.home)
    assert markdown.startswith("## 8. Closed loop")
    assert f"{numbers['first_breach']} (+{numbers['days_to_breach']} days)" in markdown
    assert f"{numbers['switched_after']} (+{numbers['days_to_switch']} days)" in markdown
    for name, _ in loop.phases:
        assert f"| {name} |" in markdown
    met = {t.what: t.met for t in rendered.targets}
    assert met["the new champion beats the old one after the switch"]
    assert met["requests failed while the champion switched"]


def test_each_report_opens_from_the_dagster_ui(loop, tmp_path):
    """A person clicks the report's link on its asset page in the real Dagster UI (started by
    `blueprint ui`, which also serves the reports) and the report's charts draw. Last in the
    module: the UI's daemon runs the sensors while it is up."""
    home = loop.home
    port = free_port()
    run_blueprint(home, "ui", "--port", str(port))
    try:
        with browser.chromium(tmp_path / "chromium-profile") as driver:
            wait = WebDriverWait(driver, browser.RENDER_TIMEOUT_SECONDS, poll_frequency=0.25)
            driver.get(f"http://127.0.0.1:{port}/assets")
            _dismiss_dagster_welcome(driver)
            for kind in REPORT_KINDS:
                event = instance(home).get_latest_materialization_event(
                    dg.AssetKey(["fraud", f"{kind}_report"])
                )
                metadata = event.asset_materialization.metadata  # type: ignore[union-attr]
                target = metadata["report"].value
                driver.get(f"http://127.0.0.1:{port}/assets/fraud/{kind}_report")
                # the latest materialization's metadata, with the report's URL as a link
                link = wait.until(
                    lambda page, target=target: next(
                        (a for a in page.find_elements(By.CSS_SELECTOR, f'a[href="{target}"]')
                         if a.text == target),
                        False,
                    ),
                    message=f"the {kind}_report asset page shows no link to {target}",
                )
                driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", link)
                browser.assert_real_picture(
                    browser.save_screenshot(driver, f"dagster-ui-{kind}", tmp_path)
                )
                ui_window = driver.current_window_handle
                browser.click_link(driver, link)  # target=_blank: a new tab
                wait.until(lambda page: len(page.window_handles) == 2)
                driver.switch_to.window(next(h for h in driver.window_handles if h != ui_window))
                wait.until(lambda page, target=target: page.current_url == target)
                charts = browser.wait_for_charts(driver, f"the {kind} report opened from the UI")
                driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", charts[0])
                browser.assert_real_picture(
                    browser.save_screenshot(driver, f"from-dagster-ui-{kind}", tmp_path)
                )
                driver.close()
                driver.switch_to.window(ui_window)
    finally:
        run_blueprint(home, "stop")


def _dismiss_dagster_welcome(driver) -> None:
    """Dagster's "Join the Dagster community" dialog covers a new instance's pages, once: it
    opens 1 s after the UI mounts, until someone skips it (the server then remembers). Wait for
    it on the first page and skip it, as a person would; on an instance that has shown it, it
    never opens."""
    skip = '//button[normalize-space()="Skip"]'
    try:
        button = WebDriverWait(driver, 15, poll_frequency=0.25).until(
            lambda page: next(iter(page.find_elements(By.XPATH, skip)), False)
        )
    except TimeoutException:
        return
    button.click()
    WebDriverWait(driver, 15).until(lambda page: not page.find_elements(By.XPATH, skip))
