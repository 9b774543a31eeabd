"""``blueprint replay``: live the held-back days of a simulated world through the running system.

For each step of ``step_days`` days, in order:

1. for a use case served online, every event of each day is sent to the running scoring
   service (``/score_batch``, in time order) as its source system would, and the labels
   delivered that day to ``/labels``, as the label's source would; then the service is
   asked to close its log files, so that the day's traffic is ingestible (a use case served in
   batch has no service: its runs score each day);
2. the world the use case declares delivers the days' files to the landing zone (the nightly
   deliveries);
3. ``blueprint materialize`` runs the pipeline without training: ingestion, features, the
   served traffic and its skew check or the batch scores, and the monitoring reports;
4. the retraining sensor is evaluated as the Dagster daemon would; when it fires,
   ``training_job`` runs with its tags, the gate decides, and a promoted challenger reaches the
   service through the registry (the replay waits until the service serves it) or scores the
   next days in batch.

This module stands for the outside world (it reads the simulator's held-back files, personal
data included); the pipeline never imports it.
"""

from __future__ import annotations

import gzip
import io
import json
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pandas as pd

from orchestration.settings import Settings

if TYPE_CHECKING:
    from orchestration.lib.serving.served import ServedColumns


def replay_selection(settings: Settings) -> str:
    """What a replay step materializes: everything but training, which only the sensor starts.
    The training table is built only before a training, unless a report reads it: a batch use
    case's performance reports take their labels from it (its personal-data scan still waits
    for a training: :func:`replay_skipped_checks`)."""
    from orchestration.lib.serving.bento import BENTO_ASSET

    name = settings.usecase_name
    selection = f'not group:training and not key:"{name}/{BENTO_ASSET}"'
    if not _reports_read_training_table(settings):
        selection += f" and not {training_set_selection(settings)}"
    return selection


def _reports_read_training_table(settings: Settings) -> bool:
    import dagster as dg

    from orchestration.definitions import definitions_for
    from orchestration.defs.monitoring.assets import MONITORING_GROUP

    graph = definitions_for(settings.usecase_name).resolve_asset_graph()
    table = dg.AssetKey([settings.usecase_name, settings.usecase.data.table])
    return any(graph.get(key).group_name == MONITORING_GROUP for key in graph.get(table).child_keys)


def replay_skipped_checks() -> frozenset[str]:
    """Checks a replay step leaves out: the personal-data scan reads everything outside the
    raw zone (the step's new reports, the warehouse, the Dagster storage: a minute a step on
    a small churn world) and gates only training, so it runs before each retraining
    (:func:`retrain_if_due`)."""
    from orchestration.defs.quality.checks import PII_CHECK

    return frozenset({PII_CHECK})


def training_set_selection(settings: Settings) -> str:
    """The table the use case's models learn from."""
    return f'key:"{settings.usecase_name}/{settings.usecase.data.table}"'

SWITCH_TIMEOUT_S = 120.0


class ReplayError(RuntimeError):
    """The replay cannot go on (the message says why)."""


@dataclass
class StepResult:
    first: date
    last: date
    scored: int = 0
    alerts: int = 0
    rejected: int = 0
    labels: int = 0
    labels_refused: int = 0
    """Labels the service refused (of an event it does not know): the files bring them."""
    delivered: int = 0
    """Files the world delivered to the landing zone."""
    decision: str = ""
    retrained: bool = False
    champion_before: str | None = None
    champion_after: str | None = None
    rejections: list[str] = field(default_factory=list)

    def note(self, rejection: str) -> None:
        """Keep the first few refusals to print."""
        if len(self.rejections) < 5:
            self.rejections.append(rejection)

    @property
    def switched(self) -> bool:
        return self.champion_before != self.champion_after


def _outbox_files(home: Path, source: str, day: date) -> list[Path]:
    from simulator.run import outbox_dir

    return sorted((outbox_dir(home) / source).glob(f"{source}_{day.isoformat()}__*"))


def _read_deliveries(paths: Sequence[Path], source: Any) -> pd.DataFrame:
    """The rows of a day's deliveries of ``source`` (a re-delivery repeats rows; a truncated
    file is skipped), every field as text (None when absent)."""
    frames = []
    for path in paths:
        try:
            data = path.read_bytes()
            text = gzip.decompress(data) if source.gzip else data
            if source.format == "csv":
                frames.append(pd.read_csv(io.BytesIO(text), dtype=str, keep_default_na=False))
            else:
                records = [json.loads(line) for line in text.splitlines() if line.strip()]
                frames.append(pd.DataFrame(
                    [{k: None if v is None else str(v) for k, v in r.items()} for r in records]
                ))
        except (OSError, EOFError, ValueError, pd.errors.ParserError):
            continue  # a torn delivery: its re-delivery carries the rows
    if not frames:
        return pd.DataFrame()
    return pd.concat(frames).drop_duplicates(list(source.key)).reset_index(drop=True)


def _requests(
    settings: Settings, source_name: str, spec: Mapping[str, Any], day: date,
    order: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """The rows of ``source_name`` delivered for ``day`` as requests: each contract column under
    its request field (``spec``: the declaration's online staging of the source), in ``order``."""
    source = settings.usecase.sources[source_name]
    rows = _read_deliveries(_outbox_files(settings.home, source_name, day), source)
    if rows.empty:
        return []
    if order:
        rows = rows.sort_values(list(order), kind="stable")
    columns = [c for c in spec["columns"] if c["name"] in rows.columns]
    return [
        {c["field"]: _field(c, record[c["name"]]) for c in columns}
        for record in rows.to_dict("records")
    ]


def _field(column: Mapping[str, Any], text: str | None) -> Any:
    """A delivered value as the request sends it: a timestamp in ISO form, a number as a number
    (sent as is when it is not one: the service refuses it, naming the field)."""
    if text is None or (text == "" and column.get("nullable")):
        return None
    if column["type"] == "timestamp":
        return text.replace(" ", "T")
    if column["type"] == "double":
        try:
            return float(text)
        except ValueError:
            return text
    return text


def day_events(
    settings: Settings, day: date, columns: ServedColumns | None = None
) -> list[dict[str, Any]]:
    """The events of ``day`` as their source sends them to the service, in time order
    (``columns``: the use case's served columns, when the caller has them already)."""
    columns = columns or _served(settings)
    return _requests(settings, columns.events_source, columns.staging["events"], day,
                     order=(columns.event_time, columns.row_id))


def day_labels(settings: Settings, columns: ServedColumns, day: date) -> list[dict[str, Any]]:
    """The labels delivered for ``day``, as their source sends them to the service."""
    return _requests(settings, columns.label_source, columns.staging["labels"], day)


def _served(settings: Settings) -> ServedColumns:
    from orchestration.lib.serving.served import ServedColumns

    return ServedColumns.declared(settings.usecase)


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class ServiceClient:
    """What the outside world sends to a use case's scoring service."""

    def __init__(self, url: str, max_batch: int, settings: Settings | None = None) -> None:
        from orchestration.lib.serving.guard import auth_headers
        from orchestration.settings import get_settings

        settings = settings or get_settings()
        self.url = url.rstrip("/")
        self.max_batch = max_batch
        self.columns = _served(settings)
        self._http = httpx.Client(timeout=120, headers=auth_headers(settings))

    def close(self) -> None:
        self._http.close()

    def score(self, events: Sequence[dict[str, Any]], result: StepResult) -> None:
        batch_field, id_field = self.columns.events_source, self.columns.row_field

        def refused(event: dict[str, Any], text: str) -> None:
            result.rejected += 1
            result.note(f"{event[id_field]}: {text}")

        for chunk in _chunks(events, self.max_batch):
            scores = self._send(chunk, ("/score_batch", lambda c: {batch_field: c}),
                                ("/score", lambda event: event), refused)
            result.scored += len(scores)
            result.alerts += sum(1 for _, score in scores if score["alert"])

    def label(self, labels: Sequence[dict[str, Any]], result: StepResult) -> None:
        source = self.columns.label_source

        def refused(_: dict[str, Any], text: str) -> None:
            result.labels_refused += 1
            result.note(f"label: {text}")

        batch = ("/labels", lambda c: {source: c})
        single = ("/labels", lambda label: {source: [label]})
        for chunk in _chunks(labels, self.max_batch):
            result.labels += len(self._send(chunk, batch, single, refused))

    def _send(
        self,
        chunk: Sequence[dict[str, Any]],
        batch: tuple[str, Callable[[Sequence[dict[str, Any]]], Any]],
        single: tuple[str, Callable[[dict[str, Any]], Any]],
        refused: Callable[[dict[str, Any], str], None],
    ) -> list[tuple[dict[str, Any], Any]]:
        """Each accepted item of ``chunk`` with its answer: one request (``batch``: route, body);
        when one item refuses it (400), item by item (``single``), each refused one handed to
        ``refused`` with the answer's text."""
        route, body = batch
        response = self._http.post(f"{self.url}{route}", json=body(chunk))
        if response.status_code != 400:
            self._raise_for(response, route)
            answer = response.json()
            return list(zip(chunk, answer if isinstance(answer, list) else [answer] * len(chunk),
                            strict=True))
        accepted = []
        route, body = single
        for item in chunk:
            response = self._http.post(f"{self.url}{route}", json=body(item))
            if response.status_code == 400:
                refused(item, response.text[:200])
                continue
            self._raise_for(response, route)
            accepted.append((item, response.json()))
        return accepted

    def serving_version(self) -> str | None:
        response = self._http.get(f"{self.url}/readyz")
        try:
            return response.json().get("model_version")
        except ValueError:
            return None

    @staticmethod
    def _raise_for(response: httpx.Response, route: str) -> None:
        if response.status_code != 200:
            raise ReplayError(
                f"the scoring service answered {route} with {response.status_code}: "
                f"{response.text[:300]}"
            )


def wait_for_champion(client: ServiceClient, version: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while client.serving_version() != version:
        if time.monotonic() > deadline:
            raise ReplayError(f"the scoring service did not switch to {version} in {timeout_s} s")
        time.sleep(0.2)


def run_training(tags: dict[str, str]) -> None:
    """``training_job`` through Dagster, with the sensor's tags (recorded on the instance)."""
    import dagster as dg

    from blueprint_cli.runs import execute_job

    if not execute_job("training_job", dg.DagsterInstance.get(), tags):
        raise ReplayError("the retraining run failed; open it in the Dagster UI for details")


def replay_step(
    settings: Settings,
    client: ServiceClient | None,
    days: Sequence[date],
    *,
    deliver: Callable[[date], Sequence[Path]],
    materialize: Callable[[str, Collection[str]], None],
    rebuild: Callable[[str], None],
    on_stage: Callable[[str], None] = lambda stage: None,
) -> StepResult:
    """Live ``days`` (consecutive) through the system; see the module's docstring. ``client``
    is the scoring service of a use case served online (None: served in batch); ``deliver``
    lands the world's held files through a day; ``materialize`` brings a selection up to date
    without the checks it names, ``rebuild`` materializes one now with all its checks."""
    from orchestration.lib.registry import registry

    result = StepResult(first=days[0], last=days[-1])
    result.champion_before = registry.champion_version(settings)
    if client is not None:
        serve_days(settings, client, days, result, on_stage)
    on_stage("delivering files")
    result.delivered = len(deliver(days[-1]))
    on_stage("materializing")
    materialize(replay_selection(settings), replay_skipped_checks())
    retrain_if_due(settings, client, result, rebuild=rebuild, on_stage=on_stage)
    return result


def serve_days(
    settings: Settings,
    client: ServiceClient,
    days: Sequence[date],
    result: StepResult,
    on_stage: Callable[[str], None],
) -> None:
    """Send the days' events and labels to the service, then have it close its logs."""
    from orchestration.lib.serving.prediction_log import request_rotation, wait_for_rotation

    for day in days:
        on_stage(f"scoring {day}")
        client.score(day_events(settings, day, client.columns), result)
        labels = day_labels(settings, client.columns, day)
        if labels:
            client.label(labels, result)
    on_stage("closing the logs")
    asked = request_rotation(settings.serving_dir)
    timeout = max(30.0, 20 * settings.serving_poll_seconds)
    if not wait_for_rotation(
        [settings.prediction_log_dir, settings.label_log_dir], asked, timeout
    ):
        raise ReplayError(f"the scoring service did not close its log files within {timeout} s")


def retrain_if_due(
    settings: Settings,
    client: ServiceClient | None,
    result: StepResult,
    *,
    rebuild: Callable[[str], None],
    on_stage: Callable[[str], None] = lambda stage: None,
) -> None:
    """Evaluate the retraining sensor as the Dagster daemon would; when it fires, build the
    training set and run its checks (the gate reads them), run ``training_job`` with the
    sensor's tags and wait until the service (when there is one) serves the champion the gate
    chose."""
    import dagster as dg

    from orchestration.defs.monitoring.automation import retraining_decision, retraining_request
    from orchestration.defs.scope import Scope
    from orchestration.lib.registry import registry

    instance = dg.DagsterInstance.get()
    result.champion_before = result.champion_before or registry.champion_version(settings)
    decision = retraining_decision(instance, Scope(settings.usecase))
    request = retraining_request(instance, decision)
    skipped = isinstance(request, dg.SkipReason)
    result.decision = (request.skip_message if skipped else None) or decision.reason
    if isinstance(request, dg.RunRequest):
        on_stage("building the training set")
        rebuild(training_set_selection(settings))
        on_stage("retraining")
        run_training(dict(request.tags))
        result.retrained = True
    result.champion_after = registry.champion_version(settings)
    if result.switched and client is not None:
        on_stage(f"switching to {result.champion_after}")
        wait_for_champion(client, result.champion_after, SWITCH_TIMEOUT_S)


def replay_days(first: date, last: date, step_days: int) -> list[list[date]]:
    if last < first:
        raise ReplayError(f"--to {last} is before --from {first}")
    if step_days < 1:
        raise ReplayError("--step-days must be at least 1")
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    return [days[i:i + step_days] for i in range(0, len(days), step_days)]
