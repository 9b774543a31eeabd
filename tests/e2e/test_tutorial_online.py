"""docs/EXTENDING.md followed literally for an online use case: ``rides`` (a ride booking scored
when it is made, its complaints as labels; tests/e2e/tutorial_online_usecase.py holds its files)
added to a copy of the project with new files only, built by the copy's own
``blueprint materialize`` (its serving snapshot and its Bento ``rides_scorer`` included), then
served over real HTTP by the copy's ``blueprint serve``: the one service code of every online
use case. The two days after the snapshot are lived through the service (bookings scored in
time order, each day's complaints sent at its end), then delivered and materialized: the
features the service logged equal the offline mart's, its scores batch scoring's.
Marked ``tutorial`` (`make test-tutorial`, run by CI)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import httpx
import numpy as np
import pandas as pd
import pytest

from orchestration.lib.serving.prediction_log import OPEN_DIR, read_closed_logs
from orchestration.lib.serving.process import free_port, readiness, stop_process_group
from tests.e2e import tutorial_copy as copy
from tests.e2e import tutorial_online_usecase as rides

pytestmark = pytest.mark.tutorial

TOLERANCE = 1e-9
MAX_BATCH = 20
SERVICE_ENV = {"BLUEPRINT_SERVING_MAX_BATCH": str(MAX_BATCH),
               "BLUEPRINT_SERVING_POLL_SECONDS": "0.2"}


@dataclass
class Online:
    project: Path
    home: Path
    env: dict[str, str]
    originals: dict[str, str]
    world: rides.RideWorld
    materialized: subprocess.CompletedProcess
    answers: dict[str, dict] = field(default_factory=dict)
    """The service's answers to the held-back bookings, by booking id."""

    @property
    def serving_dir(self) -> Path:
        return self.home / "serving" / rides.NAME

    def blueprint(self, *args: str) -> subprocess.CompletedProcess:
        return copy.blueprint(self.project, self.env, *args)

    def held_back_days(self) -> list[date]:
        return [rides.FIRST_DAY + timedelta(days=rides.DAYS + i)
                for i in range(rides.HELD_BACK_DAYS)]


@pytest.fixture(scope="module")
def online(tmp_path_factory: pytest.TempPathFactory) -> Online:
    root = tmp_path_factory.mktemp("tutorial_online")
    project, home = root / "project", root / "home"
    home.mkdir()
    originals = copy.copy_project(project)
    copy.add_use_case(project, rides.FILES, rides.SUITES, rides.WORKSPACE_ENTRY)
    world = rides.world()
    rides.landing_files(world, home / "landing", range(rides.DAYS))
    env = copy.project_env(project, home, **SERVICE_ENV)
    copy.dbt_parse(project, env)
    materialized = copy.blueprint(project, env, "materialize", "--usecase", rides.NAME)
    return Online(project, home, env, originals, world, materialized)


@dataclass
class Service:
    url: str
    http: httpx.Client
    pid: int
    shown: str
    """What ``blueprint serve`` printed."""

    def post(self, path: str, body: object) -> httpx.Response:
        return self.http.post(path, json=body)


@pytest.fixture(scope="module")
def service(online: Online) -> Iterator[Service]:
    """The copy's ``blueprint serve`` on a free port; stopped (its process group) at the end."""
    port = free_port()
    started = online.blueprint("serve", "--usecase", rides.NAME, "--port", str(port))
    pid = int((online.serving_dir / "scorer.pid").read_text().split()[0])
    url = f"http://127.0.0.1:{port}"
    try:
        assert f"Scoring service: {url}" in started.stdout, started.stdout
        token = (online.home / "secrets" / "serving.token").read_text().strip()  # made by serve
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=url, timeout=30, headers=headers) as http:
            yield Service(url, http, pid, started.stdout)
    finally:
        stop_process_group(pid, timeout_s=20)  # if a test failed before stopping it


def _stopped(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_the_use_case_is_new_files_only(online: Online):
    changed = copy.changed_files(online.project, online.originals)
    assert [name for name in changed if name.startswith(copy.PIPELINE)] == []
    assert changed == ["workspace.yaml"]
    added = sorted(copy.files_in(online.project) - set(online.originals))
    assert added == sorted([*rides.FILES, *rides.SUITES])
    assert (online.project / "workspace.yaml").read_text().endswith(rides.WORKSPACE_ENTRY)
    imported = copy.imported_from(online.project, online.env)
    project = online.project.resolve()
    assert [Path(path).resolve().parent.parent for path in imported] == [project, project]


def test_materialize_builds_the_serving_snapshot_and_the_bento(online: Online):
    output = online.materialized.stdout
    assert f"Materialized {rides.NAME}." in output, output + online.materialized.stderr
    current = (online.serving_dir / "snapshots" / "CURRENT").read_text().strip()
    manifest = json.loads((online.serving_dir / "snapshots" / current / "manifest.json")
                          .read_text())
    assert manifest["last_day"] == (rides.FIRST_DAY + timedelta(days=rides.DAYS - 1)).isoformat()
    bento = json.loads(copy.run(
        online.project, {**online.env, "BENTOML_HOME": str(online.home / "bentoml")},
        str(Path(sys.executable).parent / "bentoml"), "get", f"{rides.NAME}_scorer:latest",
        "-o", "json",
    ).stdout)
    assert bento["service"] == "bentos.scorer.service:Scorer"  # the one service code
    assert bento["labels"]["usecase"] == rides.NAME
    assert {"name": "BLUEPRINT_USECASE", "value": rides.NAME} in [
        {k: env[k] for k in ("name", "value")} for env in bento["envs"]]
    champion = bento["labels"]["champion_version"]
    assert [m["tag"] for m in bento["models"]] == [f"ride_complaint_predictor:{champion}"]
    routes = {route["route"]: route for route in bento["schema"]["routes"]}
    assert set(routes["/score"]["input"]["properties"]) == {
        rides.ROW_FIELD, rides.TIME_FIELD, "rider_phone", "fare"}
    assert {rides.ROW_FIELD, rides.SCORE} <= set(routes["/score"]["output"]["properties"])
    assert set(routes["/labels"]["input"]["properties"]) == {rides.LABELS}


def test_the_service_becomes_ready(service: Service):
    status, body = readiness(service.url)
    assert status == 200 and body.get("ready") is True, body
    assert body["usecase"] == rides.NAME


def test_serve_shows_a_request_to_try(service: Service):
    """The declared example, on the day after the snapshot, personal data made up."""
    shown = service.shown.split("-d '", 1)[1].rsplit("'", 1)[0]
    day_after = rides.FIRST_DAY + timedelta(days=rides.DAYS)
    assert json.loads(shown) == {rides.ROW_FIELD: "R9000001",
                                 rides.TIME_FIELD: f"{day_after}T13:45:10",
                                 "rider_phone": "<rider_phone>", "fare": 14.5}


def test_the_days_after_the_snapshot_are_scored_over_http(online: Online, service: Service):
    """Bookings in time order (a rider's two at the same second in one /score_batch), each
    day's complaints sent to /labels at its end."""
    for day in online.held_back_days():
        bookings = online.world.on(rides.EVENTS, day).sort_values(["booked_at", "booking_id"])
        for _, same_instant in bookings.groupby("booked_at", sort=True):
            batch = [_request(booking) for booking in same_instant.itertuples()]
            if len(batch) == 1:
                response = service.post("/score", batch[0])
                answers = [response.json()]
            else:
                response = service.post("/score_batch", {rides.EVENTS: batch})
                answers = response.json()
            assert response.status_code == 200, response.text
            online.answers.update((answer[rides.ROW_FIELD], answer) for answer in answers)
        complaints = online.world.on(rides.LABELS, day)
        labels = [{"booking_id": c.booking_id, "filed_at": c.filed_at.isoformat()}
                  for c in complaints.itertuples()]
        response = service.post("/labels", {rides.LABELS: labels})
        assert response.status_code == 200, response.text
        assert response.json() == {"changed": len(labels)}

    held_back = pd.concat([online.world.on(rides.EVENTS, d) for d in online.held_back_days()])
    assert set(online.answers) == set(held_back["booking_id"])
    assert len(held_back) > held_back["booked_at"].nunique()  # /score_batch was used
    for answer in online.answers.values():
        assert set(answer) == {rides.ROW_FIELD, rides.SCORE, "alert", "model_version", "reasons"}
        assert 0.0 <= answer[rides.SCORE] <= 1.0
        assert {r["feature"] for r in answer["reasons"]} <= set(rides.FEATURES)


def test_a_bad_request_gets_a_4xx_naming_the_field(online: Online, service: Service):
    good = _request(next(online.world.on(rides.EVENTS, online.held_back_days()[-1])
                         .itertuples()))
    good = {**good, rides.ROW_FIELD: "R9999001"}
    sent = [
        ("/score", rides.ROW_FIELD, {k: v for k, v in good.items() if k != rides.ROW_FIELD}),
        ("/score", rides.ROW_FIELD, {**good, rides.ROW_FIELD: "ride-1"}),  # not the id's shape
        ("/score", "booking_id", {**good, "booking_id": "R1"}),  # the column, not its field
        ("/score", "fare", {**good, "fare": -1.0}),
        ("/score", rides.TIME_FIELD, {**good, rides.TIME_FIELD: "2018-05-02T10:00:00+02:00"}),
        ("/score_batch", rides.EVENTS, {"transactions": [good]}),
        ("/score_batch", rides.EVENTS, {rides.EVENTS: [good] * (MAX_BATCH + 1)}),
        ("/labels", "filed_at", {rides.LABELS: [{"booking_id": "R1"}]}),
    ]
    for path, name, body in sent:
        response = service.post(path, body)
        assert 400 <= response.status_code < 500, (name, response.status_code, response.text)
        assert name in response.text, (name, response.text)
        assert good["rider_phone"] not in response.text


def test_the_service_stops_cleanly(online: Online, service: Service):
    stopped = online.blueprint("stop", "--usecase", rides.NAME)
    assert "Stopped the scoring service." in stopped.stdout, stopped.stdout
    assert _stopped(service.pid)
    log_dir = online.serving_dir / "predictions"
    assert list((log_dir / OPEN_DIR).iterdir()) == []  # a clean shutdown closes the log
    logged = read_closed_logs(log_dir)
    assert set(logged["booking_id"]) == set(online.answers)
    assert len(logged) == len(online.answers)  # the refused requests are not logged
    phones = {phone.encode() for phone in online.world.bookings["rider_phone"]}
    written = [p for folder in (online.serving_dir, online.home / "logs")
               for p in folder.rglob("*") if p.is_file()]
    assert [str(p) for p in written if any(phone in p.read_bytes() for phone in phones)] == []


def test_the_served_features_equal_the_offline_mart(online: Online):
    """The held-back days delivered and materialized: the mart's rows of the bookings served
    equal what the service logged, and the pipeline's own skew check agrees."""
    rides.landing_files(online.world, online.home / "landing",
                        range(rides.DAYS, rides.DAYS + rides.HELD_BACK_DAYS))
    again = online.blueprint("materialize", "--usecase", rides.NAME)
    assert f"Materialized {rides.NAME}." in again.stdout, again.stdout + again.stderr

    offline = _offline(online)
    logged = read_closed_logs(online.serving_dir / "predictions").set_index("booking_id")
    assert set(offline.index) >= set(logged.index)
    offline = offline.loc[logged.index]
    assert (logged["rider_key"] == offline["rider_key"]).all()
    assert len(logged["rider_key"].iloc[0]) == 64  # a pseudonym, not the phone number
    for feature in rides.FEATURES:
        served = logged[f"features.{feature}"].astype(float).to_numpy()
        expected = offline[feature].astype(float).to_numpy()
        assert np.max(np.abs(served - expected)) <= TOLERANCE, feature
    # the last day's rates count complaints the service only had from /labels: they were
    # compared too
    first, last = online.held_back_days()
    sent = online.world.on(rides.LABELS, first)["booking_id"]
    bookings = online.world.bookings.set_index("booking_id")
    complainers = set(bookings.loc[sent, "rider_phone"])
    assert online.world.on(rides.EVENTS, last)["rider_phone"].isin(complainers).any()

    instance = dg.DagsterInstance.from_config(str(online.home / "dagster"))
    key = dg.AssetCheckKey(dg.AssetKey([rides.NAME, "scored_traffic"]), "training_serving_skew")
    evaluation = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [key])[key].evaluation
    assert evaluation is not None and evaluation.passed
    found = {name: value.value for name, value in evaluation.metadata.items()}
    assert (found["compared"], found["mismatched"], found["missing_offline"]) == (
        len(online.answers), 0, 0)


def test_the_scores_equal_batch_scoring_of_the_same_rows(online: Online, tmp_path: Path):
    """The champion that answered scores the offline rows in the copy: the same scores."""
    ids = sorted(online.answers)
    (version,) = {online.answers[i]["model_version"] for i in ids}
    rows = tmp_path / "rows.parquet"
    _offline(online).loc[ids].reset_index().to_parquet(rows)
    scored = tmp_path / "scores.json"
    copy.run(online.project, online.env, sys.executable, "-c", (
        "import json, sys, pandas as pd\n"
        "from orchestration.lib.serving.scoring import load_scoring_model\n"
        "from orchestration.settings import get_settings\n"
        f"model = load_scoring_model({version!r}, get_settings({rides.NAME!r}))\n"
        f"scores = model.score(pd.read_parquet({str(rows)!r}))\n"
        f"open({str(scored)!r}, 'w').write(json.dumps(scores.tolist()))\n"
    ))
    expected = np.array(json.loads(scored.read_text()))
    served = np.array([online.answers[i][rides.SCORE] for i in ids])
    assert np.max(np.abs(served - expected)) <= TOLERANCE


def _request(booking) -> dict:
    """A booking (contract columns) as the booking system sends it to the service."""
    return {rides.ROW_FIELD: booking.booking_id, rides.TIME_FIELD: booking.booked_at.isoformat(),
            "rider_phone": booking.rider_phone, "fare": float(booking.fare)}


def _offline(online: Online) -> pd.DataFrame:
    warehouse = online.home / "warehouse" / f"{rides.NAME}.duckdb"
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.sql("select * from ride_features").df().set_index("booking_id")
