"""The closed loop, end to end, through the real `blueprint` command, Dagster and the service.

A small world whose fraud changes on day 17 (card-testing bursts and a spending shift) is
simulated with its last 12 days held back. The first 16 days are materialized (a champion is
trained and promoted), the scoring service starts, then `blueprint replay` lives the held days:
every payment of each day scored over HTTP in time order, the fraud reports sent as filed, the
files delivered, the pipeline run. Labels arrive up to 2 days late. The test asserts each step
of the loop: drift seen in the reports within two days of the drift day and not before, the
served features equal to the offline ones, the sensor firing with its reason once the newest
mature training window holds post-drift days, a challenger trained and promoted, the service
switching without one failed request (a prober sends payments the whole time), and the new
champion beating the old one on the days after the switch (both scored in batch from the
registry).

The assertions hold for both scenarios: CI's tiny one and `make test-slow`'s full-size one, where
drift keeps growing, so the sensor may retrain again after the first switch (each later switch
must be logged in order too), and where more days are replayed than reports are kept as HTML.
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass
from datetime import date, timedelta

import dagster as dg
import duckdb
import httpx
import pytest
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from sklearn.metrics import average_precision_score

from blueprint_cli.replay import day_payments
from orchestration.lib import monitoring, registry
from orchestration.lib.scoring import load_scoring_model
from orchestration.lib.serve import start_scoring_service
from orchestration.settings import get_settings
from tests import browser
from tests.e2e.e2e_world import free_port, instance
from tests.support import run_blueprint

pytestmark = [pytest.mark.slow, pytest.mark.loop]

START = date(2018, 4, 1)


@dataclass(frozen=True)
class Scenario:
    """A drift world, its windows, and the replay's steps (first, last day of each)."""

    customers: int
    terminals: int
    days: int
    hold: int
    drift: int
    env: dict[str, str]
    step_days: int

    @property
    def first_held(self) -> date:
        return START + timedelta(days=self.days - self.hold)

    @property
    def drift_day(self) -> date:
        return START + timedelta(days=self.drift)

    @property
    def last_day(self) -> date:
        return START + timedelta(days=self.days - 1)

    def setting(self, name: str, default: int) -> int:
        return int(self.env.get(name, default))

    @property
    def fire_day(self) -> date:
        """The first day after which the sensor can fire: the newest mature training window
        (:func:`orchestration.lib.retraining.newest_training_window`) then holds the required
        days from the drift day on."""
        lag = (
            self.setting("BLUEPRINT_RETRAIN_MIN_POST_DRIFT_DAYS", 3)
            + self.setting("BLUEPRINT_MAX_REPORT_DELAY_DAYS", 7)
            + self.setting("BLUEPRINT_TEST_DAYS", 7) - 1
            + self.setting("BLUEPRINT_DELAY_DAYS", 7)
        )
        return self.drift_day + timedelta(days=lag)

    def steps(self) -> list[tuple[date, date]]:
        """Replay steps: up to just after the drift starts, up to the day the sensor can fire,
        then the days the new champion serves; each cut in chunks of ``step_days``."""
        cuts = [self.drift_day + timedelta(days=2), self.fire_day, self.last_day]
        steps, first = [], self.first_held
        for cut in cuts:
            while first <= cut:
                last = min(cut, first + timedelta(days=self.step_days - 1))
                steps.append((first, last))
                first = last + timedelta(days=1)
        return steps


TINY = Scenario(
    customers=1000, terminals=2000, days=28, hold=12, drift=17, step_days=8,
    env={
        "BLUEPRINT_TRAIN_DAYS": "4",
        "BLUEPRINT_DELAY_DAYS": "1",
        "BLUEPRINT_TEST_DAYS": "3",
        "BLUEPRINT_N_FOLDS": "1",
        "BLUEPRINT_FOLD_STEP_DAYS": "3",
        "BLUEPRINT_PROMOTION_AP_FLOOR": "0.05",
        "BLUEPRINT_MAX_REPORT_DELAY_DAYS": "2",
        "BLUEPRINT_RETRAIN_MIN_POST_DRIFT_DAYS": "2",
        "BLUEPRINT_ALERTS_PER_DAY": "20",
        "BLUEPRINT_SERVING_POLL_SECONDS": "0.2",
    },
)
"""CI's scenario: a 28-day world whose frauds are all reported within 2 days, short windows."""
FULL = Scenario(
    customers=5000, terminals=10000, days=140, hold=42, drift=100, step_days=7,
    env={"BLUEPRINT_SERVING_POLL_SECONDS": "0.2"},
)
"""`make test-slow`: the default world's size and the handbook's windows, drift on day 100."""
SCENARIO = FULL if os.environ.get("BLUEPRINT_CLOSED_LOOP") == "full" else TINY
FIRST_HELD, DRIFT_DAY, HOLD, DAYS = (
    SCENARIO.first_held, SCENARIO.drift_day, SCENARIO.hold, SCENARIO.days
)
STEPS = SCENARIO.steps()
SWITCH_STEP = next(i for i, (_, last) in enumerate(STEPS) if last == SCENARIO.fire_day)
MAX_REPORT_DELAY = SCENARIO.setting("BLUEPRINT_MAX_REPORT_DELAY_DAYS", 7)
FIRST_BREACH_WITHIN = timedelta(days=2)
"""How soon after the drift starts a day's reports must show it (the first drifted day's traffic
is only partly the new pattern)."""
SWITCHED = re.compile(r"champion switched (\S+) -> (\S+);")
SERVING = re.compile(r"serving model (\S+) \(was (\S+)\)")


class Prober(threading.Thread):
    """Sends a known payment again and again: every answer must be a 200."""

    def __init__(self, url: str, payment: dict) -> None:
        super().__init__(daemon=True)
        self.url, self.payment = url, payment
        self.stop = threading.Event()
        self.sent = 0
        self.failures: list[str] = []
        self.versions: list[str] = []

    def run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set():
                try:
                    response = client.post(f"{self.url}/score", json=self.payment)
                    if response.status_code != 200:
                        self.failures.append(f"{response.status_code} {response.text[:200]}")
                    else:
                        self.versions.append(response.json()["model_version"])
                except httpx.HTTPError as error:
                    self.failures.append(repr(error))
                self.sent += 1
                time.sleep(0.2)


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("closed-loop") / "home"
    port = free_port()
    ports = {"BLUEPRINT_SERVING_PORT": str(port), "BLUEPRINT_REPORTS_PORT": str(free_port())}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {**SCENARIO.env, **ports}.items():
            patch.setenv(name, value)
        patch.setenv("BLUEPRINT_HOME", str(home))
        patch.setenv("DAGSTER_HOME", str(home / "dagster"))
        run_blueprint(
            home, "simulate", "--customers", str(SCENARIO.customers), "--terminals",
            str(SCENARIO.terminals), "--days", str(DAYS), "--drift-from", str(SCENARIO.drift),
            "--hold-last", str(HOLD), "--max-report-delay-days", str(MAX_REPORT_DELAY),
            "--seed", "3", "--no-progress",
        )
        run_blueprint(home, "materialize")
        settings = get_settings()
        first_champion = registry.champion_version(settings)
        server = start_scoring_service(settings, port)
        # the first payment the replay will send: the prober's copies are retries of it
        prober = Prober(server.url, day_payments(home, FIRST_HELD)[0])
        prober.start()
        outputs = []
        try:
            for first, last in STEPS:
                outputs.append(
                    run_blueprint(
                        home, "replay", "--from", first.isoformat(), "--to", last.isoformat(),
                        "--step-days", str((last - first).days + 1), "--no-progress",
                    ).stdout
                )
        finally:
            prober.stop.set()
            prober.join(timeout=30)
            server.stop()
        switches = [  # (replay step, old champion, new champion), in order
            (step, *match.groups())
            for step, out in enumerate(outputs) for match in SWITCHED.finditer(out)
        ]
        yield {
            "home": home, "settings": settings, "first_champion": first_champion,
            "prober": prober, "outputs": outputs, "log": server.log_path.read_text(),
            "switches": switches,
        }


def _challenger(loop) -> str:
    """The version the first switch promoted: the challenger the drift's retraining trained."""
    assert loop["switches"], "the champion never switched"
    return loop["switches"][0][2]


def _index(loop) -> dict[tuple[date, str], dict]:
    return {(e.day, e.kind): e.numbers
            for e in monitoring.read_index(loop["settings"].reports_dir)}


def test_every_replayed_day_has_its_reports_and_no_skew(loop):
    index, settings = _index(loop), loop["settings"]
    first_kept = SCENARIO.last_day - timedelta(days=settings.report_keep_days - 1)
    entries = {(e.day, e.kind): e for e in monitoring.read_index(settings.reports_dir)}
    for offset in range(HOLD):
        day = FIRST_HELD + timedelta(days=offset)
        for kind in ("data_drift", "prediction_drift"):
            assert (day, kind) in index, f"no {kind} report for {day}"
            html = monitoring.report_path(settings.reports_dir, day, kind)
            if day >= first_kept:
                assert html.exists(), f"the {kind} report of {day} is gone"
            else:  # older than the keep window: pruned, its numbers kept
                assert not html.exists() and entries[(day, kind)].html is None, html
    matured = SCENARIO.last_day - timedelta(days=MAX_REPORT_DELAY)
    assert (matured, "performance") in index
    assert (matured + timedelta(days=1), "performance") not in index  # labels not mature yet
    assert "index.html" in {p.name for p in loop["settings"].reports_dir.iterdir()}
    checks = instance(loop["home"]).event_log_storage.get_latest_asset_check_execution_by_key(
        [dg.AssetCheckKey(dg.AssetKey("scored_traffic"), "training_serving_skew")]
    )
    evaluation = checks[dg.AssetCheckKey(dg.AssetKey("scored_traffic"), "training_serving_skew")]
    assert evaluation.status.value == "SUCCEEDED"
    metadata = evaluation.evaluation.metadata  # type: ignore[union-attr]
    assert metadata["compared"].value > 1000 and metadata["mismatched"].value == 0


def test_each_report_is_linked_from_its_materialization(loop):
    settings = loop["settings"]
    for kind in monitoring.REPORT_KINDS:
        event = instance(loop["home"]).get_latest_materialization_event(
            dg.AssetKey(f"{kind}_report")
        )
        metadata = event.asset_materialization.metadata  # type: ignore[union-attr]
        url = metadata["report"].value
        assert url.startswith(f"http://127.0.0.1:{settings.reports_port}/")
        assert (settings.reports_dir / url.split("/", 3)[3]).exists()
        assert metadata["traffic_rows"].value > 0


def _breached(index, day: date) -> bool:
    drift = index[(day, "prediction_drift")]
    data = index[(day, "data_drift")]
    return bool(drift["score_drift"]) or data["drifted_share"] >= 0.5


def test_drift_is_seen_soon_after_the_drift_day_and_not_before(loop):
    index = _index(loop)
    held = [FIRST_HELD + timedelta(days=offset) for offset in range(HOLD)]
    assert not [day for day in held if day < DRIFT_DAY and _breached(index, day)]
    first = next((day for day in held if _breached(index, day)), None)
    assert first is not None and first <= DRIFT_DAY + FIRST_BREACH_WITHIN, (
        f"drift from {DRIFT_DAY}, first breach {first}"
    )


def test_the_sensor_fired_with_its_reason_and_the_challenger_was_promoted(loop):
    runs = instance(loop["home"]).get_run_records(
        dg.RunsFilter(job_name="training_job", tags={"blueprint/trigger": "retraining_sensor"}),
        ascending=True,
    )
    assert runs, "the retraining sensor launched no training run"
    assert all(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    tags = runs[0].dagster_run.tags  # the drift's retraining; a growing drift may fire again
    first_breach = date.fromisoformat(tags["blueprint/first_breach"])
    assert DRIFT_DAY <= first_breach <= DRIFT_DAY + FIRST_BREACH_WITHIN
    assert int(tags["blueprint/post_drift_training_days"]) >= SCENARIO.setting(
        "BLUEPRINT_RETRAIN_MIN_POST_DRIFT_DAYS", 3
    )
    assert tags["blueprint/thresholds"]

    settings, challenger = loop["settings"], _challenger(loop)
    step, old, _ = loop["switches"][0]
    assert old == loop["first_champion"] and challenger != old
    promotion = [e for e in registry.history(challenger, settings) if e.event == "promoted"]
    assert promotion and "AP gain" in promotion[0].reason
    # the switch happened once the window held post-drift days, not before
    assert step == SWITCH_STEP, f"first switch in replay step {step}, expected {SWITCH_STEP}"
    # any later switch starts from the champion the previous one installed
    chain = [loop["first_champion"], *(new for _, _, new in loop["switches"])]
    assert [old for _, old, _ in loop["switches"]] == chain[:-1]
    assert registry.champion_version(settings) == chain[-1]


def test_the_service_switched_without_a_failed_request(loop):
    prober = loop["prober"]
    assert prober.sent > 50
    assert prober.failures == []
    # the service logged each switch, with both versions, in the replay's order
    expected = [(new, old) for _, old, new in loop["switches"]]
    logged = [(new, old) for new, old in SERVING.findall(loop["log"]) if old != "None"]
    assert expected and logged == expected, logged  # "(was None)": the service's start
    # and the prober was answered by each champion in turn, never an older one again
    served = [v for i, v in enumerate(prober.versions) if i == 0 or v != prober.versions[i - 1]]
    assert served[0] == loop["first_champion"] and served[-1] == expected[-1][0]
    assert len(served) == len(set(served)), served


def test_the_new_champion_beats_the_old_one_on_the_days_after_the_switch(loop):
    settings, home = loop["settings"], loop["home"]
    after_switch = STEPS[SWITCH_STEP + 1][0]
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        rows = con.execute(
            "select f.*, (r.transaction_id is not null)::int as label "
            "from transaction_features f left join "
            "(select distinct transaction_id from stg_fraud_reports) r using (transaction_id) "
            "where f.tx_date >= ?", [after_switch],
        ).df()
    assert rows["label"].sum() > 10
    old = load_scoring_model(loop["first_champion"], settings)
    # the drift's challenger: a later retraining may have learned from these very days
    new = load_scoring_model(_challenger(loop), settings)
    ap_old = average_precision_score(rows["label"], old.score(rows))
    ap_new = average_precision_score(rows["label"], new.score(rows))
    print(f"realized AP after the switch: old {ap_old:.3f}, new {ap_new:.3f}")
    assert ap_new > ap_old


def test_the_loops_numbers(loop):
    """What the scenario measures (printed with -s): days from the drift to the sensor firing
    and to the promotion, and the realized AP of the days each champion served."""
    index = _index(loop)
    old, new = loop["first_champion"], _challenger(loop)

    def realized(version: str, first: date, end: date) -> list[float]:
        return [
            n["average_precision"] for (day, kind), n in sorted(index.items())
            if kind == "performance" and first <= day < end
            and n.get("model_version") == version and n.get("average_precision") is not None
        ]

    fired = STEPS[SWITCH_STEP][1]
    before = realized(old, FIRST_HELD, DRIFT_DAY)
    decayed = realized(old, DRIFT_DAY, date.max)
    after = realized(new, DRIFT_DAY, date.max)
    assert decayed and after, "each champion has mature days it served"
    mean = lambda values: sum(values) / len(values) if values else float("nan")  # noqa: E731
    print(
        f"\nclosed loop ({os.environ.get('BLUEPRINT_CLOSED_LOOP', 'tiny')}): drift {DRIFT_DAY}; "
        f"sensor fired and {new} promoted after {fired} "
        f"(+{(fired - DRIFT_DAY).days} days); realized AP: old champion before the drift "
        f"{mean(before):.3f} ({len(before)} days), after it {mean(decayed):.3f} "
        f"({len(decayed)} days); new champion {mean(after):.3f} ({len(after)} days)"
    )


def test_each_report_opens_from_the_dagster_ui(loop, tmp_path):
    """A person clicks the report's link on its asset page in the real Dagster UI (started by
    `blueprint ui`, which also serves the reports) and the report's charts draw. Last in the
    module: the UI's daemon runs the sensors while it is up."""
    home = loop["home"]
    port = free_port()
    run_blueprint(home, "ui", "--port", str(port))
    try:
        with browser.chromium(tmp_path / "chromium-profile") as driver:
            wait = WebDriverWait(driver, browser.RENDER_TIMEOUT_SECONDS, poll_frequency=0.25)
            driver.get(f"http://127.0.0.1:{port}/assets")
            _dismiss_dagster_welcome(driver)
            for kind in monitoring.REPORT_KINDS:
                event = instance(home).get_latest_materialization_event(
                    dg.AssetKey(f"{kind}_report")
                )
                metadata = event.asset_materialization.metadata  # type: ignore[union-attr]
                target = metadata["report"].value
                driver.get(f"http://127.0.0.1:{port}/assets/{kind}_report")
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
