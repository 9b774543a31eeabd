"""Every configurable value of Blueprint, read from the environment, with documented defaults.

This is the one home of configuration: code never reads ``os.environ`` elsewhere.
Paths are resolved at call time so tests can point ``BLUEPRINT_HOME`` at a temporary folder.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from orchestration.lib.core.usecase import UseCase, load_usecase

PROJECT_ROOT = Path(__file__).resolve().parent.parent
"""The repository root: the one helper that knows where the project lives."""

DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"
EXPECTATIONS_DIR = PROJECT_ROOT / "expectations"
USECASES_DIR = PROJECT_ROOT / "orchestration" / "usecases"
"""One declaration per use case: ``<name>.yaml`` (:mod:`orchestration.lib.core.usecase`)."""
DEFAULT_USECASE = "fraud"
USECASE_ENV = "BLUEPRINT_USECASE"
"""Names the use case a process runs (every process of the pipeline, the service, dbt's calls)."""
FEATURE_CATALOG_DIR = "feature_catalog"
"""The folder of a use case's reports that holds its feature catalog (dbt's docs site)."""

PSEUDONYMIZATION_KEY_ENV = "BLUEPRINT_PSEUDONYMIZATION_KEY"

NO_TELEMETRY_ENV = {
    "DO_NOT_TRACK": "1",
    "DAGSTER_DISABLE_TELEMETRY": "1",
    "GX_ANALYTICS_ENABLED": "false",
    "BENTOML_DO_NOT_TRACK": "True",
    "EVIDENTLY_DISABLE_TELEMETRY": "1",
}
"""Blueprint runs offline: no library may phone home (dbt's is off in dbt_project.yml)."""


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


@dataclass(frozen=True)
class Settings:
    """A snapshot of the environment; build one with :func:`get_settings`."""

    home: Path
    """BLUEPRINT_HOME (default ``./data`` under the repository): all state lives here."""
    partitions_start: date
    """BLUEPRINT_PARTITIONS_START (default 2018-04-01): first day of the daily partitions."""
    quarantine_warn_rate: float
    """BLUEPRINT_QUARANTINE_WARN_RATE (default 0.001): quarantined share that warns."""
    quarantine_fail_rate: float
    """BLUEPRINT_QUARANTINE_FAIL_RATE (default 0.05): quarantined share that fails the check."""
    ingest_workers: int
    """BLUEPRINT_INGEST_WORKERS (default: the machine's cores): partitions of one source a raw
    asset ingests at once (threads in its run)."""
    dagster_port: int
    """BLUEPRINT_DAGSTER_PORT (default 3000): port of the Dagster UI started by ``make demo``."""
    env: str
    """BLUEPRINT_ENV (default ``local``): which set of resources to use (local | production)."""
    reports_port: int
    """BLUEPRINT_REPORTS_PORT (default 3002): port on which ``blueprint ui`` serves the
    monitoring reports, so a report opens in one click from the Dagster UI."""
    serving_port: int
    """BLUEPRINT_SERVING_PORT (default 3001): port of the scoring service (``blueprint serve``)."""
    prediction_log_rotate_rows: int
    """BLUEPRINT_PREDICTION_LOG_ROTATE_ROWS (default 100000): rows after which the service
    closes its prediction log file and starts a new one."""
    prediction_log_rotate_seconds: float
    """BLUEPRINT_PREDICTION_LOG_ROTATE_SECONDS (default 3600): age after which an open
    prediction log file is closed, so ingestion sees recent traffic."""
    serving_poll_seconds: float
    """BLUEPRINT_SERVING_POLL_SECONDS (default 0.5): how often the scoring service checks the
    registry's champion and the snapshot's ``CURRENT`` pointer for a change to follow."""
    serving_max_batch: int
    """BLUEPRINT_SERVING_MAX_BATCH (default 1000): most transactions one ``/score_batch``
    request may carry."""
    serving_clock: str
    """BLUEPRINT_SERVING_CLOCK (default ``events``): the scoring service's now, ``wall`` (the
    machine's time: production) or ``events`` (the newest event time it accepted: replays of
    simulated days); see ``orchestration/lib/serving/clock.py``."""
    serving_start_timeout_seconds: float
    """BLUEPRINT_SERVING_START_TIMEOUT_SECONDS (default 120): how long ``blueprint serve``
    waits for the service's ``/readyz`` before giving up."""
    report_keep_days: int
    """BLUEPRINT_REPORT_KEEP_DAYS (default 30): days of monitoring reports kept as HTML; older
    ones are deleted while their numbers stay in ``reports/index.html``."""
    report_max_rows: int
    """BLUEPRINT_REPORT_MAX_ROWS (default 50000): rows a report's charts are drawn from; a larger
    day is sampled (every fraud kept, the rest a seeded uniform sample). Its numbers use all
    rows."""
    usecase_name: str
    """BLUEPRINT_USECASE (default ``fraud``): the use case this process runs; its protocol, gate,
    budget and thresholds are fields of its declaration (:attr:`usecase`)."""

    @property
    def usecase(self) -> UseCase:
        """The declaration of :attr:`usecase_name`, with the environment's overrides."""
        return load_usecase(self.usecase_name, USECASES_DIR)

    @property
    def landing_dir(self) -> Path:
        """Where source systems deliver files (outside world -> us)."""
        return self.home / "landing"

    @property
    def raw_dir(self) -> Path:
        """The raw zone: immutable Parquet snapshots, may hold personal data."""
        return self.home / "raw"

    @property
    def raw_predictions_dir(self) -> Path:
        """The use case's ingested prediction logs (``file=<log file>/data.parquet``)."""
        return self.raw_dir / "predictions" / self.usecase_name

    @property
    def quarantine_dir(self) -> Path:
        """Quarantine records without personal data (file, line, reason, row hash)."""
        return self.home / "quarantine"

    @property
    def training_dir(self) -> Path:
        """Exact training data of every model (Parquet, named by content hash)."""
        return self.home / "training" / self.usecase_name

    @property
    def warehouse_path(self) -> Path:
        return self.home / "warehouse" / f"{self.usecase_name}.duckdb"

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @property
    def bentoml_home(self) -> Path:
        return self.home / "bentoml"

    @property
    def model_store_dir(self) -> Path:
        """BentoML's model store: the trained pipelines and their immutable facts."""
        return self.bentoml_home / "models"

    @property
    def registry_path(self) -> Path:
        """The append-only model registry (SQLite): status changes and gate decisions."""
        return self.home / "registry" / f"{self.usecase_name}.db"

    @property
    def serving_dir(self) -> Path:
        """What the pipeline publishes for the scoring service and what the service writes."""
        return self.home / "serving" / self.usecase_name

    @property
    def feature_definitions_path(self) -> Path:
        """dbt's compiled feature SQL, published by the feature step: what models record the
        hash of and what serving runs."""
        return self.serving_dir / "feature_definitions.json"

    @property
    def snapshot_dir(self) -> Path:
        """Serving snapshots (recent staged history), replaced atomically via ``CURRENT``."""
        return self.serving_dir / "snapshots"

    @property
    def prediction_log_dir(self) -> Path:
        """The service's prediction log: ``open/`` is being written, ``closed/`` is ingestible."""
        return self.serving_dir / "predictions"

    @property
    def label_log_dir(self) -> Path:
        """Labels the service was sent since its snapshot (``open/``, ``closed/``)."""
        return self.serving_dir / "labels"

    @property
    def pii_scan_cache_path(self) -> Path:
        """The files the PII scan found clean, so the next scan skips them while unchanged
        (:class:`orchestration.lib.quality.pii.ScanCache`)."""
        return self.home / "quality" / "pii-scan-cache.json"

    @property
    def reports_dir(self) -> Path:
        """Monitoring reports (HTML per day and kind) and their index (``index.html``)."""
        return self.reports_root / self.usecase_name

    @property
    def feature_catalog_dir(self) -> Path:
        """The use case's feature catalog (dbt's docs site, one page), served with the reports."""
        return self.reports_dir / FEATURE_CATALOG_DIR

    @property
    def reports_root(self) -> Path:
        """Every use case's reports (``<use case>/``) and the index of them all: what the
        reports server serves."""
        return self.home / "reports"

    @property
    def scores_dir(self) -> Path:
        """Batch scores of the use case, one folder per day."""
        return self.home / "scores" / self.usecase_name

    @property
    def monitoring_dir(self) -> Path:
        """Each day's scored traffic joined with the offline features (what reports read)."""
        return self.home / "monitoring" / self.usecase_name

    @property
    def logs_dir(self) -> Path:
        """Logs of the processes Blueprint starts, and the failed-runs log."""
        return self.home / "logs"

    @property
    def secrets_dir(self) -> Path:
        return self.home / "secrets"

    @property
    def simulator_dir(self) -> Path:
        """The simulator's own record of the world (ground truth, fault manifest)."""
        return self.home / "simulator"

    @property
    def raw_zone_dirs(self) -> tuple[Path, ...]:
        """Folders allowed to hold personal data: what sources deliver and the raw lake."""
        return (self.landing_dir, self.raw_dir, self.simulator_dir, self.secrets_dir)


def get_settings(usecase: str | None = None) -> Settings:
    """Read the environment now; ``usecase`` names the use case (default: BLUEPRINT_USECASE).

    The state of a use case (its warehouse, registry, training data, serving files, scores,
    monitoring and reports) lives in folders of its own under the home; the landing and raw
    zones, the Dagster instance, the model store and the secrets are shared.
    """
    home = Path(_env("BLUEPRINT_HOME", str(PROJECT_ROOT / "data"))).expanduser().resolve()
    return Settings(
        home=home,
        partitions_start=date.fromisoformat(_env("BLUEPRINT_PARTITIONS_START", "2018-04-01")),
        quarantine_warn_rate=float(_env("BLUEPRINT_QUARANTINE_WARN_RATE", "0.001")),
        quarantine_fail_rate=float(_env("BLUEPRINT_QUARANTINE_FAIL_RATE", "0.05")),
        ingest_workers=max(1, int(_env("BLUEPRINT_INGEST_WORKERS", str(os.cpu_count() or 1)))),
        dagster_port=int(_env("BLUEPRINT_DAGSTER_PORT", "3000")),
        env=_env("BLUEPRINT_ENV", "local"),
        reports_port=int(_env("BLUEPRINT_REPORTS_PORT", "3002")),
        serving_port=int(_env("BLUEPRINT_SERVING_PORT", "3001")),
        prediction_log_rotate_rows=int(_env("BLUEPRINT_PREDICTION_LOG_ROTATE_ROWS", "100000")),
        prediction_log_rotate_seconds=float(
            _env("BLUEPRINT_PREDICTION_LOG_ROTATE_SECONDS", "3600")
        ),
        serving_poll_seconds=float(_env("BLUEPRINT_SERVING_POLL_SECONDS", "0.5")),
        serving_max_batch=int(_env("BLUEPRINT_SERVING_MAX_BATCH", "1000")),
        serving_clock=_env("BLUEPRINT_SERVING_CLOCK", "events"),
        serving_start_timeout_seconds=float(
            _env("BLUEPRINT_SERVING_START_TIMEOUT_SECONDS", "120")
        ),
        report_keep_days=int(_env("BLUEPRINT_REPORT_KEEP_DAYS", "30")),
        report_max_rows=int(_env("BLUEPRINT_REPORT_MAX_ROWS", "50000")),
        usecase_name=usecase or _env(USECASE_ENV, DEFAULT_USECASE),
    )


class NoKeyError(RuntimeError):
    """A reader of pseudonyms found no key where the pipeline keeps it."""


def pseudonymization_key(settings: Settings | None = None, create: bool = True) -> bytes:
    """The secret key of the card pseudonymization (HMAC-SHA256).

    Taken from BLUEPRINT_PSEUDONYMIZATION_KEY when set; otherwise generated once under
    ``BLUEPRINT_HOME/secrets`` (mode 600) and reused. Never printed or logged. ``create=False``
    (the scoring service: it serves the pipeline's pseudonyms, a new key would match none)
    raises `NoKeyError` instead of generating one.
    """
    from_env = os.environ.get(PSEUDONYMIZATION_KEY_ENV)
    if from_env:
        return from_env.encode()
    settings = settings or get_settings()
    key_file = settings.secrets_dir / "pseudonymization.key"
    if not key_file.exists() and not create:
        raise NoKeyError(
            f"no pseudonymization key at {key_file}: the service serves the pipeline's home "
            f"(set BLUEPRINT_HOME to it) or the key in {PSEUDONYMIZATION_KEY_ENV}"
        )
    if not key_file.exists():
        from orchestration.lib.core.atomic import create_secret_once

        create_secret_once(key_file, secrets.token_hex(32))  # never another process's key
    return key_file.read_text().strip().encode()


def telemetry_off() -> None:
    """Make sure no library this process loads phones home (unless told otherwise)."""
    for name, value in NO_TELEMETRY_ENV.items():
        os.environ.setdefault(name, value)


def export_to_subprocesses(settings: Settings | None = None) -> None:
    """Put the resolved paths in the environment of subprocesses (dbt, dagster, bentoml)."""
    settings = settings or get_settings()
    os.environ["BLUEPRINT_HOME"] = str(settings.home)
    os.environ["BENTOML_HOME"] = str(settings.bentoml_home)
    os.environ[USECASE_ENV] = settings.usecase_name  # dbt's warehouse file
    settings.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
    telemetry_off()
