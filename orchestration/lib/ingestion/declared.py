"""The source contracts a use case declares (``sources:``), as the contracts ingestion enforces."""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestration.lib.ingestion.contracts import Column, Rule, SourceContract

if TYPE_CHECKING:
    from orchestration.lib.core.usecase import Source, UseCase


def contract_of(name: str, source: Source) -> SourceContract:
    """One declared source as a :class:`SourceContract`."""
    return SourceContract(
        name=name,
        version=source.version,
        file_format=source.format,
        gzip=source.gzip,
        columns=tuple(
            Column(column.name, column.type, column.nullable, column.pii,
                   tuple(Rule(rule) for rule in column.rules), minimum=column.min,
                   maximum=column.max, pattern=column.pattern, max_length=column.max_length)
            for column in source.columns
        ),
        key=tuple(source.key),
        type_change_share=source.type_change_share,
        type_change_min_rows=source.type_change_min_rows,
    )


def contracts_of(usecase: UseCase) -> dict[str, SourceContract]:
    """Every source of a use case, by name, in declaration order."""
    return {name: contract_of(name, source) for name, source in usecase.sources.items()}
