"""The feature catalog is regenerated exactly when what it shows changed: the use case's models,
the shared macros, the project file or the declared features dbt is given."""

from __future__ import annotations

import shutil
from pathlib import Path

from orchestration.lib.features.catalog import (
    CATALOG_PAGE,
    catalog_is_current,
    project_fingerprint,
    publish_catalog,
)
from orchestration.settings import DBT_PROJECT_DIR


def project(tmp_path: Path) -> Path:
    copy = tmp_path / "dbt_project"
    shutil.copytree(DBT_PROJECT_DIR, copy, ignore=shutil.ignore_patterns("target", "logs"))
    return copy


def test_the_fingerprint_follows_the_use_cases_models_the_macros_and_the_vars(tmp_path):
    copy = project(tmp_path)
    before = project_fingerprint(copy, "fraud", ["--vars", "{}"])
    assert project_fingerprint(copy, "fraud", ["--vars", "{}"]) == before
    assert project_fingerprint(copy, "fraud", ["--vars", '{"x": 1}']) != before

    other = copy / "models" / "churn" / "marts" / "account_features.sql"
    other.write_text(other.read_text() + "\n-- another use case's model\n")
    assert project_fingerprint(copy, "fraud", ["--vars", "{}"]) == before

    for changed in (copy / "models" / "fraud" / "marts" / "_marts__models.yml",
                    copy / "macros" / "declared_features.sql", copy / "dbt_project.yml"):
        original = changed.read_text()
        changed.write_text(original + "\n# edited\n")
        assert project_fingerprint(copy, "fraud", ["--vars", "{}"]) != before, changed
        changed.write_text(original)
    assert project_fingerprint(copy, "fraud", ["--vars", "{}"]) == before


def test_a_catalog_is_current_once_published_with_its_fingerprint(tmp_path):
    catalog = tmp_path / "reports" / "fraud" / "feature_catalog"
    assert not catalog_is_current(catalog, "abc")
    page = tmp_path / "static_index.html"
    page.write_text("<html>dbt docs</html>")
    published = publish_catalog(page, catalog, "abc")
    assert published == catalog / CATALOG_PAGE and published.read_text() == page.read_text()
    assert catalog_is_current(catalog, "abc") and not catalog_is_current(catalog, "abd")
    published.unlink()  # a page lost after its fingerprint was written is made again
    assert not catalog_is_current(catalog, "abc")
