"""What a registered model's version records, immutable once saved (its parameters, the rows it
saw and their content hash, its features and their definitions' hash, the code and libraries
that made it, its metrics), and the registry's errors."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import math
import platform
import subprocess
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestration.settings import PROJECT_ROOT

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

FACTS_SCHEMA = 1
"""Version of the layout of :class:`ModelFacts` in the metadata; bump it when fields change."""

LIBRARIES = ("scikit-learn", "numpy", "pandas", "pyarrow", "joblib", "bentoml", "dbt-core",
             "dbt-duckdb", "duckdb", "dagster")
"""Libraries whose versions are recorded with every model (Python's is added)."""


class RegistryError(Exception):
    """A registry operation that cannot be done; the message says why and what to do."""


class UnknownVersionError(RegistryError):
    """The version is not in the registry (or not in the model store)."""


class ChampionChangedError(RegistryError):
    """A promotion expected another champion than the current one (it changed meanwhile)."""


class NoChampionError(RegistryError):
    """No version is champion yet."""


@dataclass(frozen=True)
class DataWindow:
    """One slice of the use case's table used in training: its days, row count and content
    hash."""

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
    table: str
    """The dbt model the rows were read from (the declaration's ``data.table``)."""
    label_cutoff: date | None = None
    """Labels known before this day count as positives (``label.known_at < label_cutoff``)."""
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
