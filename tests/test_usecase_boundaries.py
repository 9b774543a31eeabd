"""The pipeline's code names no use case: a use case is a declaration.

The identifiers of every declared use case (its sources and their columns, its raw assets, its
table, keys, label, features, model name and dbt models) are searched, as whole words, in the
code of ``orchestration/lib/``, ``orchestration/defs/``, ``blueprint_cli/`` and ``bentos/``:
names, attributes, arguments and string literals, not comments or docstrings.

No file may name any (the last ones were made generic in issue 15): the test lists each file
that does, with what it names.
"""

from __future__ import annotations

import ast
import re
from collections import Counter
from pathlib import Path

from orchestration.lib.core.usecase import load_usecase, usecase_names
from orchestration.settings import PROJECT_ROOT, USECASES_DIR

SEARCHED = ("orchestration/lib", "orchestration/defs", "blueprint_cli", "bentos")
GENERIC_WORDS = frozenset({"name", "email", "phone", "address", "plan", "minutes", "device",
                           "category"})
"""Column names that are also ordinary words of any code: personal data the PII scan finds by
value, whatever the column is called, and words such as a query ``plan``, a duration's
``minutes``, a ``device`` or a warning ``category`` that mean no use case."""

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def usecase_identifiers() -> dict[str, set[str]]:
    """Every declared use case's identifiers, by use case."""
    found = {}
    for name in usecase_names(USECASES_DIR):
        usecase = load_usecase(name, USECASES_DIR, environ={})
        ids = {usecase.data.table, usecase.data.row_id, usecase.data.event_time,
               usecase.data.partition_date, *usecase.data.entities.values(),
               usecase.label.column, usecase.label.known_at, usecase.models.name,
               *usecase.features.train_on, *usecase.features.baseline}
        declared = usecase.resolved_features()
        if declared is not None:
            ids |= set(declared.names)
        for source_name, source in usecase.sources.items():
            ids |= {source_name, f"raw_{source_name}", *(c.name for c in source.columns)}
        models = PROJECT_ROOT / "dbt_project" / "models" / name
        ids |= {path.stem for path in models.rglob("*.sql")}
        found[name] = ids - GENERIC_WORDS
    return found


def code_words(source: str) -> list[str]:
    """The names and string-literal words of a module, without its docstrings."""
    tree = ast.parse(source)
    docstrings = {
        id(node.value) for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    }
    words = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            words.append(node.id)
        elif isinstance(node, ast.Attribute):
            words.append(node.attr)
        elif isinstance(node, ast.arg):
            words.append(node.arg)
        elif isinstance(node, ast.keyword) and node.arg:
            words.append(node.arg)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            words.append(node.name)
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and id(node) not in docstrings):
            words.extend(_WORD.findall(node.value))
    return words


def named_identifiers(identifiers: set[str]) -> dict[str, Counter]:
    found = {}
    for folder in SEARCHED:
        for path in sorted((PROJECT_ROOT / folder).rglob("*.py")):
            hits = Counter(w for w in code_words(path.read_text()) if w in identifiers)
            if hits:
                found[str(path.relative_to(PROJECT_ROOT))] = hits
    return found


def test_the_code_words_ignore_comments_and_docstrings():
    source = '"""transaction_id"""\n# card_key\nx = 1\n"""card_key"""\ny = f"{x} card_key"\n'
    assert code_words(source).count("card_key") == 1
    assert "transaction_id" not in code_words(source)


def test_the_pipeline_names_no_use_case_beyond_what_is_left(capsys):
    identifiers = set().union(*usecase_identifiers().values())
    found = named_identifiers(identifiers)
    total = sum(sum(hits.values()) for hits in found.values())
    with capsys.disabled():
        print(f"\nsearched {', '.join(SEARCHED)} for {len(identifiers)} identifiers of "
              f"{', '.join(usecase_names(USECASES_DIR))}: {total} occurrences in "
              f"{len(found)} files")
    problems = [f"{path}: {dict(hits.most_common(8))}" for path, hits in sorted(found.items())]
    assert not problems, "files naming use-case identifiers:\n" + "\n".join(problems)


def _imports(path: Path) -> list[str]:
    modules = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.append(node.module)
    return modules


def test_the_library_imports_neither_dagster_nor_a_use_case():
    offenders = [
        f"{path.relative_to(PROJECT_ROOT)} imports {module}"
        for path in sorted((PROJECT_ROOT / "orchestration" / "lib").rglob("*.py"))
        for module in _imports(path)
        if module.split(".")[0] in ("dagster", "dagster_dbt", "dagster_duckdb")
        or module.startswith(("orchestration.usecases", "orchestration.defs", "simulator"))
    ]
    assert not offenders, offenders
