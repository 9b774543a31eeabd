"""The model registry: immutable facts in BentoML's model store, status in an append-only log.

Two homes, because the two kinds of information behave differently:

- What a model *is* never changes once it is trained: the pipeline, its parameters, the exact
  training data, the features and their definitions, the pseudonymization key it saw, the code
  and library versions, its metrics. :func:`save_model` writes it to BentoML's model store under
  ``BLUEPRINT_HOME/bentoml/models/<models.name>/<version>`` (the use case's model name), the
  facts as the model's metadata (:class:`ModelFacts`).
- What *happens* to a model changes over time: candidate, champion, archived, and why. That is
  an append-only event log in SQLite at ``BLUEPRINT_HOME/registry/<use case>.db``, table
  ``events``; triggers abort every UPDATE and DELETE, so the history cannot be rewritten. The
  status of each version is derived from its events by the view ``model_status``.

Each event is a transition of the version in its row:

==============  ============  =================================================================
event           status after  written by
==============  ============  =================================================================
registered      candidate     :func:`save_model` (:func:`register`)
promoted        champion      :func:`promote`, :func:`record_decision`, :func:`rollback`
archived        archived      :func:`promote`: the champion it replaces, in the same transaction
rolled_back     archived      :func:`rollback`: the champion taken down
rejected        (unchanged)   :func:`record_decision`: the promotion gate said no
==============  ============  =================================================================

The ``promoted`` event a rollback writes for the champion it restores carries ``rollback_of`` in
its details; that is how the promotion history knows how far back the next rollback goes.

Exactly one champion at a time: promoting archives the previous champion in the same
transaction, and a trigger aborts any insert that would leave two. Serving asks
:func:`champion_version` which version to load; it never takes the newest model by date.

The BentoML store is always passed explicitly (``_model_store=``), built from the settings of
the moment: BentoML's own default store is a process-wide singleton fixed from ``BENTOML_HOME``
(or ``~/bentoml``) the first time anything asks for it, which would ignore a ``BLUEPRINT_HOME``
set later, or changed between tests.
"""

from __future__ import annotations

import dataclasses
import getpass
import hashlib
import importlib.metadata
import json
import math
import platform
import sqlite3
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestration.settings import PROJECT_ROOT, Settings, get_settings

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    from bentoml import Model
    from bentoml._internal.models import ModelStore

MODEL_FILENAME = "saved_model.pkl"
"""The joblib file of the pipeline inside a store entry (the name bentoml.sklearn uses too)."""
FACTS_SCHEMA = 1
"""Version of the layout of :class:`ModelFacts` in the metadata; bump it when fields change."""


GATE_ACTOR = "promotion_gate"
TRAINING_ACTOR = "training"

CANDIDATE, CHAMPION, ARCHIVED = "candidate", "champion", "archived"
EVENTS = ("registered", "promoted", "archived", "rolled_back", "rejected")

BUSY_TIMEOUT_S = 30.0
"""How long a writer waits for another one to finish before giving up."""
REGISTRY_SCHEMA = 1
"""Stored as SQLite's ``user_version``; the schema is created when it is below."""

LIBRARIES = ("scikit-learn", "numpy", "pandas", "pyarrow", "joblib", "bentoml", "dbt-core",
             "dbt-duckdb", "duckdb", "dagster")
"""Libraries whose versions are recorded with every model (Python's is added)."""

_SCHEMA = f"""
create table if not exists events (
    id integer primary key autoincrement,
    at text not null default (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    version text not null,
    event text not null check (event in ({", ".join(f"'{e}'" for e in EVENTS)})),
    actor text not null check (actor <> ''),
    reason text not null check (trim(reason) <> ''),
    details text not null default '{{}}' check (json_valid(details))
);

create index if not exists events_by_version on events (version, id);

create trigger if not exists events_are_never_updated
before update on events
begin
    select raise(abort, 'the model registry is append-only: events cannot be updated');
end;

create trigger if not exists events_are_never_deleted
before delete on events
begin
    select raise(abort, 'the model registry is append-only: events cannot be deleted');
end;

create trigger if not exists versions_are_registered_once
before insert on events
when new.event = 'registered'
    and exists (select 1 from events where version = new.version and event = 'registered')
begin
    select raise(abort, 'this model version is already registered');
end;

create trigger if not exists events_name_a_registered_version
before insert on events
when new.event <> 'registered'
    and not exists (select 1 from events where version = new.version and event = 'registered')
begin
    select raise(abort, 'unknown model version: it was never registered');
end;

create view if not exists model_status as
with

registrations as (
    select id as registration_id, version, at as registered_at
    from events
    where event = 'registered'
),

transitions as (
    select
        version,
        event,
        at,
        row_number() over (partition by version order by id desc) as recency
    from events
    where event in ('registered', 'promoted', 'archived', 'rolled_back')
),

decisions as (
    select
        version,
        event,
        row_number() over (partition by version order by id desc) as recency
    from events
    where event in ('promoted', 'rejected')
)

select
    registrations.registration_id,
    registrations.version,
    case transitions.event
        when 'registered' then '{CANDIDATE}'
        when 'promoted' then '{CHAMPION}'
        else '{ARCHIVED}'
    end as status,
    transitions.at as status_since,
    registrations.registered_at,
    decisions.event as last_decision
from registrations
join transitions
    on transitions.version = registrations.version and transitions.recency = 1
left join decisions
    on decisions.version = registrations.version and decisions.recency = 1;

create trigger if not exists one_champion_at_a_time
after insert on events
when new.event = 'promoted'
    and (select count(*) from model_status where status = '{CHAMPION}') > 1
begin
    select raise(abort, 'exactly one champion at a time: archive the current one first');
end;
"""


class RegistryError(Exception):
    """A registry operation that cannot be done; the message says why and what to do."""


class UnknownVersionError(RegistryError):
    """The version is not in the registry (or not in the model store)."""


class NoChampionError(RegistryError):
    """No version is champion yet."""


# --- immutable facts ------------------------------------------------------------------------


@dataclass(frozen=True)
class DataWindow:
    """One slice of ``training_set`` used in training: its days, row count and content hash."""

    start: date
    """First day (daily partition) of the slice, inclusive."""
    end: date
    """Last day (daily partition) of the slice, inclusive."""
    rows: int
    """Number of rows used."""
    fingerprint: str
    """:func:`frame_fingerprint` of exactly the rows used (features and label)."""


@dataclass(frozen=True)
class TrainingData:
    """Enough to select the exact rows a model was trained and tested on again."""

    train: DataWindow
    test: DataWindow
    label_cutoff: date | None = None
    """Labels reported before this day count as fraud (``report_date < label_cutoff``)."""
    table: str = "training_set"
    """The dbt model the rows were read from."""
    query: str | None = None
    """The SQL that selected the rows, when the trainer records it."""

    @property
    def partitions(self) -> list[str]:
        """The daily partitions read, train and test (ISO dates)."""
        days: set[date] = set()
        for window in (self.train, self.test):
            days.update(
                date.fromordinal(o)
                for o in range(window.start.toordinal(), window.end.toordinal() + 1)
            )
        return [d.isoformat() for d in sorted(days)]


@dataclass(frozen=True)
class CodeVersion:
    """The code a model was trained with."""

    commit: str
    """The git commit of the code, or ``unknown`` outside a git checkout."""
    dirty: bool | None
    """Whether the checkout had uncommitted changes (None when unknown)."""


def code_version(root: Path = PROJECT_ROOT) -> CodeVersion:
    """The git commit of ``root`` and whether its work tree differs from it (read-only git)."""

    def git(*args: str) -> str | None:
        try:
            completed = subprocess.run(
                # no optional locks: a status must not write the index of a shared checkout
                ["git", "--no-optional-locks", "-C", str(root), *args],
                capture_output=True, text=True, timeout=30, check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return completed.stdout if completed.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return CodeVersion(commit="unknown", dirty=None)
    changes = git("status", "--porcelain")
    return CodeVersion(
        commit=commit.strip(), dirty=None if changes is None else bool(changes.strip())
    )


def library_versions() -> dict[str, str]:
    """Versions of Python and of the libraries that shape a model (:data:`LIBRARIES`)."""
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ModelFacts:
    """What a trained model is, written once into its BentoML metadata and never changed."""

    params: dict[str, Any]
    """Parameters and hyperparameters (see :func:`estimator_params`)."""
    training_data: TrainingData
    features: list[str]
    """Feature columns, in the order the pipeline expects them."""
    feature_definitions_hash: str
    """Hash of dbt's compiled SQL of the feature models (``FeatureDefinitions.hash`` of
    ``orchestration.lib.features.feature_definitions``)."""
    pseudonymization_key_fingerprint: str
    """``orchestration.lib.features.pseudonymize.key_fingerprint`` of the key behind
    ``card_key``."""
    fold_metrics: list[dict[str, Any]]
    """Metrics per validation fold (each may carry its own window)."""
    test_metrics: dict[str, float]
    """The use case's declared metrics on the test window, by their declared names."""
    training_seconds: float
    """Wall-clock time the training took."""
    trained_at: datetime = field(default_factory=_utc_now)
    """When the training finished (UTC)."""
    code: CodeVersion = field(default_factory=code_version)
    library_versions: dict[str, str] = field(default_factory=library_versions)
    reference_means: dict[str, float] = field(default_factory=dict)
    """Mean of each feature over the training window: the baseline of the reason codes."""

    def to_metadata(self) -> dict[str, Any]:
        """The facts as BentoML metadata: JSON-serialisable, and without nulls.

        BentoML refuses None in metadata, so a null is an absent key (non-finite numbers are
        null too), except in ``params``, where None is a meaningful value (``max_depth=None``):
        they are kept whole as one JSON text.
        """
        facts = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        facts["training_data"] = {
            **dataclasses.asdict(self.training_data), "partitions": self.training_data.partitions
        }
        facts["params"] = json.dumps(_jsonable(self.params), sort_keys=True, allow_nan=False)
        return _without_nulls(_jsonable({"facts_schema": FACTS_SCHEMA, **facts}))

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> ModelFacts:
        """The facts back from :meth:`to_metadata` (as stored in the model's metadata)."""
        if metadata.get("facts_schema") != FACTS_SCHEMA:
            raise RegistryError(
                f"model metadata has facts_schema {metadata.get('facts_schema')!r}, "
                f"this code reads {FACTS_SCHEMA}"
            )
        data = metadata["training_data"]

        def window(raw: Mapping[str, Any]) -> DataWindow:
            return DataWindow(
                start=date.fromisoformat(raw["start"]), end=date.fromisoformat(raw["end"]),
                rows=int(raw["rows"]), fingerprint=raw["fingerprint"],
            )

        cutoff = data.get("label_cutoff")
        return cls(
            params=json.loads(metadata["params"]),
            training_data=TrainingData(
                train=window(data["train"]),
                test=window(data["test"]),
                label_cutoff=date.fromisoformat(cutoff) if cutoff else None,
                table=data["table"],
                query=data.get("query"),
            ),
            features=list(metadata["features"]),
            feature_definitions_hash=metadata["feature_definitions_hash"],
            pseudonymization_key_fingerprint=metadata["pseudonymization_key_fingerprint"],
            fold_metrics=[dict(m) for m in metadata["fold_metrics"]],
            test_metrics=dict(metadata["test_metrics"]),
            training_seconds=float(metadata["training_seconds"]),
            trained_at=datetime.fromisoformat(metadata["trained_at"]),
            code=CodeVersion(
                commit=metadata["code"]["commit"], dirty=metadata["code"].get("dirty")
            ),
            library_versions=dict(metadata["library_versions"]),
            reference_means={
                k: float(v) for k, v in metadata.get("reference_means", {}).items()
            },
        )


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        if any(v is None for v in value):
            raise ValueError(f"a list in the model facts holds a null: {value!r}")
        return [_without_nulls(v) for v in value]
    return value


def _jsonable(value: Any) -> Any:
    """``value`` made of JSON types only: numpy scalars unwrapped, dates as ISO text."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if hasattr(value, "item") and type(value).__module__ == "numpy":
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{value!r} ({type(value).__name__}) cannot be stored as JSON")


def estimator_params(estimator: Any) -> dict[str, Any]:
    """An estimator's ``get_params(deep=True)``, JSON-safe: nested estimators as their repr."""

    def plain(value: Any) -> Any:
        try:
            return _jsonable(value)
        except TypeError:
            return repr(value)

    return {name: plain(value) for name, value in estimator.get_params(deep=True).items()}


# --- the content hash of a training frame ---------------------------------------------------

_NULL = "\\N"
_ESCAPES = (("\\", "\\\\"), ("\t", "\\t"), ("\n", "\\n"))


def _escape(text: str) -> str:
    for plain, escaped in _ESCAPES:
        text = text.replace(plain, escaped)
    return text


def _canonical_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    if pa.types.is_dictionary(kind):
        column = column.cast(kind.value_type)
        kind = kind.value_type
    is_text = pa.types.is_string(kind) or pa.types.is_large_string(kind)
    if pa.types.is_timestamp(kind):
        column = column.cast(pa.timestamp("ns", tz="UTC" if kind.tz else None))
    elif pa.types.is_floating(kind):
        column = column.cast(pa.float64())
    text = column.cast(pa.large_string())
    if is_text:
        for plain, escaped in _ESCAPES:
            text = pc.replace_substring(text, plain, escaped)
    return pc.fill_null(text, _NULL)


def frame_fingerprint(df: pd.DataFrame) -> str:
    """sha256 of the rows of ``df``, independent of row order, column order and dtype widths.

    The canonical serialization that is hashed (UTF-8):

    1. a header line: the column names, sorted, escaped like text, joined by tabs;
    2. one line per row, the values in that column order joined by tabs, the lines sorted by
       their bytes; every line ends with a newline.

    A value is written as Apache Arrow renders it as text: integers in decimal, floats after
    widening to float64 in their shortest round-trip form (``0.1``; an integral float reads
    like an integer, so a column of ``3.0`` matches one of ``3``), timestamps in nanoseconds
    (``2018-04-01 10:00:00.000000000``; time-zone aware ones in UTC with a ``Z``), dates
    ``YYYY-MM-DD``, booleans ``true``/``false``. In text, backslash, tab and newline are
    escaped as ``\\\\``, ``\\t``, ``\\n``. A missing value (None, NaN, NaT) is ``\\N``. The
    index is not part of the rows.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    table = pa.Table.from_pandas(df, preserve_index=False)
    names = sorted(table.column_names)
    digest = hashlib.sha256()
    digest.update(("\t".join(_escape(name) for name in names) + "\n").encode())
    if not names or table.num_rows == 0:
        return digest.hexdigest()
    # Arrow's kernels release the GIL: rendering the columns side by side uses every core
    with ThreadPoolExecutor() as pool:
        columns = list(pool.map(lambda name: _canonical_text(table.column(name)), names))
    tab, newline, nothing = (pa.scalar(s, pa.large_string()) for s in ("\t", "\n", ""))
    rows = pc.binary_join_element_wise(*columns, tab)
    lines = pc.binary_join_element_wise(rows, nothing, newline)  # each row, then a newline
    ordered = pc.take(lines, pc.sort_indices(lines)).combine_chunks()
    _, offsets, data = ordered.buffers()
    first, last = (
        int.from_bytes(offsets[8 * i : 8 * i + 8], "little", signed=True)
        for i in (ordered.offset, ordered.offset + len(ordered))
    )
    digest.update(memoryview(data)[first:last])
    return digest.hexdigest()


# --- the model store ------------------------------------------------------------------------


def model_store(settings: Settings | None = None) -> ModelStore:
    """BentoML's model store under ``BLUEPRINT_HOME/bentoml/models``, never ``~/bentoml``."""
    # ModelStore is not exported publicly; it is the type bentoml.models.* take as _model_store.
    from bentoml._internal.models import ModelStore

    settings = settings or get_settings()
    settings.model_store_dir.mkdir(parents=True, exist_ok=True)
    return ModelStore(settings.model_store_dir)


def model_name(settings: Settings | None = None) -> str:
    """The use case's model name in the store (``models.name`` of its declaration)."""
    return (settings or get_settings()).usecase.models.name


def _tag(version: str, settings: Settings | None = None) -> str:
    name_of_model = model_name(settings)
    name, _, bare = version.rpartition(":")
    if name not in ("", name_of_model) or not bare:
        raise UnknownVersionError(f"{version!r} is not a version of {name_of_model}")
    if bare == "latest":
        raise RegistryError(
            "a model is loaded by its version, never 'latest': ask champion_version() which one"
        )
    return f"{name_of_model}:{bare}"


def _stored_model(version: str, settings: Settings | None) -> Model:
    import bentoml
    from bentoml.exceptions import NotFound

    settings = settings or get_settings()
    tag = _tag(version, settings)
    try:
        found = bentoml.models.get(tag, _model_store=model_store(settings))
    except NotFound:
        found = None
    # the store also answers a unique prefix of a version; the registry only knows exact ones
    if found is None or str(found.tag) != tag:
        raise UnknownVersionError(
            f"model version {version!r} is not in the model store {settings.model_store_dir}"
        )
    return found


def save_model(
    pipeline: Any,
    facts: ModelFacts,
    *,
    actor: str = TRAINING_ACTOR,
    reason: str = "trained by the training pipeline",
    settings: Settings | None = None,
) -> str:
    """Save a fitted pipeline and its facts to the model store and register it as a candidate.

    Returns the new version (the BentoML tag's version, e.g. ``k3zq2vz4bcx7dxyz``).
    """
    import bentoml
    import joblib

    expected = getattr(pipeline, "feature_names_in_", None)
    if expected is not None and list(expected) != list(facts.features):
        raise ValueError(
            f"facts.features {facts.features} differ from the columns the pipeline was fitted "
            f"on {list(expected)}"
        )
    metadata = facts.to_metadata()
    json.dumps(metadata, allow_nan=False)  # fails here, not half-way through the save
    settings = settings or get_settings()
    with bentoml.models.create(
        model_name(settings), metadata=metadata, _model_store=model_store(settings)
    ) as bento_model:
        joblib.dump(pipeline, bento_model.path_of(MODEL_FILENAME))
    version = bento_model.tag.version
    register(
        version, actor=actor, reason=reason, details={"tag": str(bento_model.tag)},
        settings=settings,
    )
    return version


def model_facts(version: str, settings: Settings | None = None) -> ModelFacts:
    """The immutable facts of a version, read from its metadata (the pipeline is not loaded)."""
    return ModelFacts.from_metadata(_stored_model(version, settings).info.metadata)


def load_model(version: str, settings: Settings | None = None) -> tuple[Any, ModelFacts]:
    """The pipeline of a version and its facts. Serving passes :func:`champion_version`."""
    import joblib

    stored = _stored_model(version, settings)
    pipeline = joblib.load(stored.path_of(MODEL_FILENAME))
    return pipeline, ModelFacts.from_metadata(stored.info.metadata)


# --- the append-only registry ---------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """One row of the registry's log."""

    id: int
    at: datetime
    version: str
    event: str
    actor: str
    reason: str
    details: dict[str, Any]


@dataclass(frozen=True)
class VersionStatus:
    """The current status of a registered version, derived from its events."""

    version: str
    status: str
    """candidate, champion or archived."""
    registered_at: datetime
    status_since: datetime
    last_decision: str | None
    """The latest promotion decision: promoted, rejected, or None when there was none."""


def _parse_at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _connect(settings: Settings | None) -> sqlite3.Connection:
    path = (settings or get_settings()).registry_path
    path.parent.mkdir(parents=True, exist_ok=True)
    # autocommit mode: transactions are opened explicitly (BEGIN IMMEDIATE for writers)
    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        if db.execute("pragma user_version").fetchone()[0] < REGISTRY_SCHEMA:
            # one creator at a time; the statements are idempotent for the ones that waited
            db.execute("begin immediate")
            try:
                _install_schema(db)
            except BaseException:
                db.execute("rollback")
                raise
            db.execute("commit")
    except BaseException:
        db.close()
        raise
    return db


def _install_schema(db: sqlite3.Connection) -> None:
    for statement in _split_statements(_SCHEMA):
        db.execute(statement)
    db.execute(f"pragma user_version = {REGISTRY_SCHEMA}")


def _split_statements(script: str) -> Iterator[str]:
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            yield buffer.strip()
            buffer = ""


@contextmanager
def _session(settings: Settings | None, *, write: bool) -> Iterator[sqlite3.Connection]:
    """A connection inside one transaction; writers take the write lock up front."""
    db = _connect(settings)
    try:
        db.execute("begin immediate" if write else "begin")
        try:
            yield db
        except BaseException:
            db.execute("rollback")
            raise
        db.execute("commit")
    finally:
        db.close()


def _append(
    db: sqlite3.Connection,
    version: str,
    event: str,
    actor: str,
    reason: str,
    details: Mapping[str, Any] | None = None,
) -> None:
    db.execute(
        "insert into events (version, event, actor, reason, details) values (?, ?, ?, ?, ?)",
        (version, event, actor, reason, json.dumps(_jsonable(details or {}), allow_nan=False)),
    )


def _require_reason(reason: str) -> None:
    if not reason or not reason.strip():
        raise RegistryError("a reason is required: say why, it is kept in the history")


def _status_rows(db: sqlite3.Connection, version: str | None = None) -> list[VersionStatus]:
    query = (
        "select version, status, registered_at, status_since, last_decision from model_status"
    )
    parameters: tuple[str, ...] = ()
    if version is not None:
        query += " where version = ?"
        parameters = (version,)
    return [
        VersionStatus(
            version=row[0], status=row[1], registered_at=_parse_at(row[2]),
            status_since=_parse_at(row[3]), last_decision=row[4],
        )
        for row in db.execute(query + " order by registration_id", parameters).fetchall()
    ]


def _status_of(db: sqlite3.Connection, version: str) -> VersionStatus:
    rows = _status_rows(db, version)
    if not rows:
        raise UnknownVersionError(
            f"unknown model version {version!r}: `blueprint models list` shows the registered ones"
        )
    return rows[0]


def _champion(db: sqlite3.Connection) -> VersionStatus | None:
    champions = [row for row in _status_rows(db) if row.status == CHAMPION]
    return champions[0] if champions else None


def _events(db: sqlite3.Connection, version: str | None = None) -> list[Event]:
    query = "select id, at, version, event, actor, reason, details from events"
    parameters: tuple[str, ...] = ()
    if version is not None:
        query += " where version = ?"
        parameters = (version,)
    return [
        Event(id=row[0], at=_parse_at(row[1]), version=row[2], event=row[3], actor=row[4],
              reason=row[5], details=json.loads(row[6]))
        for row in db.execute(query + " order by id", parameters).fetchall()
    ]


def _champion_lineage(events: Iterable[Event]) -> list[str]:
    """The champions in promotion order, with those taken down by a rollback removed.

    The last one is the current champion, the one before it is where a rollback goes back to.
    """
    lineage: list[str] = []
    for event in events:
        if event.event != "promoted":
            continue
        if "rollback_of" in event.details:
            lineage.pop()  # the rolled-back champion; the restored one is on top again
        else:
            lineage.append(event.version)
    return lineage


def cli_actor() -> str:
    """The actor of a command run by a person: ``cli:<user>``."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = "unknown"
    return f"cli:{user}"


def register(
    version: str,
    *,
    actor: str = TRAINING_ACTOR,
    reason: str = "trained by the training pipeline",
    details: Mapping[str, Any] | None = None,
    settings: Settings | None = None,
) -> None:
    """Record a new version as a candidate (:func:`save_model` does this after saving)."""
    _require_reason(reason)
    with _session(settings, write=True) as db:
        if _status_rows(db, version):
            raise RegistryError(f"model version {version!r} is already registered")
        _append(db, version, "registered", actor, reason, details)


def promote(
    version: str,
    *,
    reason: str,
    actor: str,
    numbers: Mapping[str, Any] | None = None,
    settings: Settings | None = None,
) -> str | None:
    """Make ``version`` the champion, archiving the current one in the same transaction.

    Returns the champion it replaced, if any.
    """
    _require_reason(reason)
    with _session(settings, write=True) as db:
        if _status_of(db, version).status == CHAMPION:
            raise RegistryError(f"model version {version!r} is already the champion")
        previous = _champion(db)
        previous_version = previous.version if previous else None
        if previous_version is not None:
            _append(db, previous_version, "archived", actor, reason, {"superseded_by": version})
        details: dict[str, Any] = {"previous_champion": previous_version}
        if numbers is not None:
            details["numbers"] = numbers
        _append(db, version, "promoted", actor, reason, details)
    return previous_version


def record_decision(
    version: str,
    promoted: bool,
    reason: str,
    numbers: Mapping[str, Any],
    *,
    actor: str = GATE_ACTOR,
    settings: Settings | None = None,
) -> None:
    """Record the promotion gate's decision: ``promoted`` (it becomes champion) or ``rejected``.

    ``numbers`` are what the decision was based on (the candidate's and champion's metrics,
    thresholds); they are kept in the event's details.
    """
    if promoted:
        promote(version, reason=reason, actor=actor, numbers=numbers, settings=settings)
        return
    _require_reason(reason)
    with _session(settings, write=True) as db:
        _status_of(db, version)
        _append(db, version, "rejected", actor, reason, {"numbers": numbers})


def rollback(reason: str, *, actor: str, settings: Settings | None = None) -> str:
    """Make the previous champion champion again and archive the current one.

    Returns the version restored. "Previous" follows the promotion history: after promoting
    A, B, C, a rollback restores B and a second one A.
    """
    _require_reason(reason)
    with _session(settings, write=True) as db:
        current = _champion(db)
        if current is None:
            raise NoChampionError("there is no champion to roll back")
        lineage = _champion_lineage(_events(db))
        if len(lineage) < 2:
            raise RegistryError(
                f"cannot roll back: {current.version} is the first champion, "
                "there is no previous champion to restore"
            )
        restored = lineage[-2]
        _append(db, current.version, "rolled_back", actor, reason, {"restored": restored})
        _append(db, restored, "promoted", actor, reason,
                {"previous_champion": current.version, "rollback_of": current.version})
    return restored


def history(version: str | None = None, settings: Settings | None = None) -> list[Event]:
    """Every event, oldest first; only those of ``version`` when given."""
    with _session(settings, write=False) as db:
        if version is not None:
            _status_of(db, version)
        return _events(db, version)


def versions(settings: Settings | None = None) -> list[VersionStatus]:
    """Every registered version with its status, in registration order."""
    with _session(settings, write=False) as db:
        return _status_rows(db)


def status(version: str, settings: Settings | None = None) -> VersionStatus:
    """The status of one version."""
    with _session(settings, write=False) as db:
        return _status_of(db, version)


def champion(settings: Settings | None = None) -> VersionStatus | None:
    """The current champion, or None before the first promotion."""
    with _session(settings, write=False) as db:
        return _champion(db)


def champion_version(settings: Settings | None = None) -> str:
    """The version serving must use: the registry's champion, never the newest model."""
    current = champion(settings)
    if current is None:
        raise NoChampionError(
            "no model is champion yet: promote one (`blueprint models promote VERSION --reason`)"
        )
    return current.version


ALERT_THRESHOLD = "alert_threshold"
"""Key, in a gate decision's numbers, of the alert threshold chosen for the version."""


def alert_threshold(version: str, settings: Settings | None = None) -> float | None:
    """The alert threshold the gate chose for ``version`` (its latest decision), if any.

    The gate records it in every decision's numbers, promoted or not, so a version promoted by
    hand later (``blueprint models promote``) or restored by a rollback keeps its threshold.
    """
    for event in reversed(history(version, settings)):
        numbers = event.details.get("numbers") or {}
        if numbers.get(ALERT_THRESHOLD) is not None:
            return float(numbers[ALERT_THRESHOLD])
    return None
