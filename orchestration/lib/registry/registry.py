"""The model registry: immutable facts in BentoML's model store, status in an append-only log.

Two homes, because the two kinds of information behave differently:

- What a model *is* never changes once it is trained: the pipeline, its parameters, the exact
  training data, the features and their definitions, the pseudonymization key it saw, the code
  and library versions, its metrics. :func:`save_model` writes it to BentoML's model store under
  ``BLUEPRINT_HOME/bentoml/models/<models.name>/<version>`` (the use case's model name), the
  facts as the model's metadata (:class:`orchestration.lib.registry.facts.ModelFacts`).
- What *happens* to a model changes over time: candidate, champion, archived, and why. That is
  an append-only event log in SQLite at ``BLUEPRINT_HOME/registry/<use case>.db``, table
  ``events``; triggers abort every UPDATE and DELETE, so the history cannot be rewritten. The
  status of each version is derived from its events by the view ``model_status``
  (:mod:`orchestration.lib.registry.log` holds the schema, the connections and the reads).

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

import getpass
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from orchestration.lib.registry.facts import (
    ChampionChangedError,
    ModelFacts,
    NoChampionError,
    RegistryError,
    UnknownVersionError,
)
from orchestration.lib.registry.log import (
    CHAMPION,
    Event,
    VersionStatus,
    append_event,
    champion_lineage,
    current_champion,
    read_events,
    require_reason,
    session,
    status_of,
    status_rows,
)
from orchestration.settings import Settings, get_settings

if TYPE_CHECKING:
    from bentoml import Model
    from bentoml._internal.models import ModelStore

MODEL_FILENAME = "saved_model.pkl"
"""The joblib file of the pipeline inside a store entry (the name bentoml.sklearn uses too)."""


GATE_ACTOR = "promotion_gate"
TRAINING_ACTOR = "training"


# --- immutable facts ------------------------------------------------------------------------


# --- the content hash of a training frame ---------------------------------------------------


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
    require_reason(reason)
    with session(settings, write=True) as db:
        if status_rows(db, version):
            raise RegistryError(f"model version {version!r} is already registered")
        append_event(db, version, "registered", actor, reason, details)


ANY_CHAMPION: Any = object()
"""A promotion that replaces whichever champion there is (a person's)."""


def promote(
    version: str,
    *,
    reason: str,
    actor: str,
    numbers: Mapping[str, Any] | None = None,
    expected_champion: str | None = ANY_CHAMPION,
    settings: Settings | None = None,
) -> str | None:
    """Make ``version`` the champion, archiving the current one in the same transaction.

    ``expected_champion``: the champion the decision was made against (None: none); when the
    champion is another by now (a rollback or promotion while the gate decided), nothing is
    recorded and `ChampionChangedError` is raised. Returns the champion it replaced, if any.
    """
    require_reason(reason)
    with session(settings, write=True) as db:
        if status_of(db, version).status == CHAMPION:
            raise RegistryError(f"model version {version!r} is already the champion")
        previous = current_champion(db)
        previous_version = previous.version if previous else None
        if expected_champion is not ANY_CHAMPION and previous_version != expected_champion:
            raise ChampionChangedError(
                f"the champion changed while the decision was made: it was compared with "
                f"{expected_champion or 'no champion'}, the champion is now "
                f"{previous_version or 'none'}"
            )
        if previous_version is not None:
            append_event(
                db, previous_version, "archived", actor, reason, {"superseded_by": version}
            )
        details: dict[str, Any] = {"previous_champion": previous_version}
        if numbers is not None:
            details["numbers"] = numbers
        append_event(db, version, "promoted", actor, reason, details)
    return previous_version


def record_decision(
    version: str,
    promoted: bool,
    reason: str,
    numbers: Mapping[str, Any],
    *,
    actor: str = GATE_ACTOR,
    expected_champion: str | None = ANY_CHAMPION,
    settings: Settings | None = None,
) -> None:
    """Record the promotion gate's decision: ``promoted`` (it becomes champion) or ``rejected``.

    ``numbers`` are what the decision was based on (the candidate's and champion's metrics,
    thresholds); they are kept in the event's details. ``expected_champion``: see `promote`.
    """
    if promoted:
        promote(version, reason=reason, actor=actor, numbers=numbers,
                expected_champion=expected_champion, settings=settings)
        return
    require_reason(reason)
    with session(settings, write=True) as db:
        status_of(db, version)
        append_event(db, version, "rejected", actor, reason, {"numbers": numbers})


def rollback(reason: str, *, actor: str, settings: Settings | None = None) -> str:
    """Make the previous champion champion again and archive the current one.

    Returns the version restored. "Previous" follows the promotion history: after promoting
    A, B, C, a rollback restores B and a second one A.
    """
    require_reason(reason)
    with session(settings, write=True) as db:
        current = current_champion(db)
        if current is None:
            raise NoChampionError("there is no champion to roll back")
        lineage = champion_lineage(read_events(db))
        if len(lineage) < 2:
            raise RegistryError(
                f"cannot roll back: {current.version} is the first champion, "
                "there is no previous champion to restore"
            )
        restored = lineage[-2]
        append_event(db, current.version, "rolled_back", actor, reason, {"restored": restored})
        append_event(db, restored, "promoted", actor, reason,
                {"previous_champion": current.version, "rollback_of": current.version})
    return restored


def history(version: str | None = None, settings: Settings | None = None) -> list[Event]:
    """Every event, oldest first; only those of ``version`` when given."""
    with session(settings, write=False) as db:
        if version is not None:
            status_of(db, version)
        return read_events(db, version)


def versions(settings: Settings | None = None) -> list[VersionStatus]:
    """Every registered version with its status, in registration order."""
    with session(settings, write=False) as db:
        return status_rows(db)


def status(version: str, settings: Settings | None = None) -> VersionStatus:
    """The status of one version."""
    with session(settings, write=False) as db:
        return status_of(db, version)


def champion(settings: Settings | None = None) -> VersionStatus | None:
    """The current champion, or None before the first promotion."""
    with session(settings, write=False) as db:
        return current_champion(db)


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
