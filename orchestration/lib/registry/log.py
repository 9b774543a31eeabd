"""The registry's append-only log in SQLite: its schema, its connections (one writer at a time,
readers never blocked), its events, and the status of each version they imply."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from orchestration.lib.registry.facts import (
    RegistryError,
    UnknownVersionError,
    _jsonable,
)
from orchestration.settings import Settings, get_settings

if TYPE_CHECKING:
    pass

EVENTS = ("registered", "promoted", "archived", "rolled_back", "rejected")


CANDIDATE, CHAMPION, ARCHIVED = "candidate", "champion", "archived"

BUSY_TIMEOUT_S = 30.0
"""How long a writer waits for another one to finish before giving up."""

REGISTRY_SCHEMA = 1
"""Stored as SQLite's ``user_version``; the schema is created when it is below."""

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
def session(settings: Settings | None, *, write: bool) -> Iterator[sqlite3.Connection]:
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


def append_event(
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


def require_reason(reason: str) -> None:
    if not reason or not reason.strip():
        raise RegistryError("a reason is required: say why, it is kept in the history")


def status_rows(db: sqlite3.Connection, version: str | None = None) -> list[VersionStatus]:
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


def status_of(db: sqlite3.Connection, version: str) -> VersionStatus:
    rows = status_rows(db, version)
    if not rows:
        raise UnknownVersionError(
            f"unknown model version {version!r}: `blueprint models list` shows the registered ones"
        )
    return rows[0]


def current_champion(db: sqlite3.Connection) -> VersionStatus | None:
    champions = [row for row in status_rows(db) if row.status == CHAMPION]
    return champions[0] if champions else None


def read_events(db: sqlite3.Connection, version: str | None = None) -> list[Event]:
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


def champion_lineage(events: Iterable[Event]) -> list[str]:
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
