"""The feature catalog an analyst reads: dbt's own docs site of a use case's models (each column's
description, each model's SQL and its lineage from the sources), as one static page.

The feature step generates it (``dbt docs generate --static``) after its build when the dbt
project changed: :func:`project_fingerprint` over the use case's models, the shared macros, the
project file and the vars the pipeline passes. The page is published next to the monitoring
reports (``reports/<use case>/feature_catalog/index.html``), which ``blueprint ui`` serves; the
fingerprint is written after the page, so a crash in between rebuilds it next time.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Sequence
from pathlib import Path

from orchestration.lib.core.atomic import atomic_output, atomic_write_bytes

CATALOG_PAGE = "index.html"
FINGERPRINT_FILE = "fingerprint"
STATIC_PAGE = "static_index.html"
"""What ``dbt docs generate --static`` writes in its target folder: the site in one file."""


def project_fingerprint(project_dir: Path, usecase: str, dbt_arguments: Sequence[str]) -> str:
    """sha256 over what the use case's catalog is made of: its models' files, the macros, the
    project file, and the arguments every dbt call gets (the declared features)."""
    project_dir = Path(project_dir)
    files = [
        *(project_dir / "models" / usecase).rglob("*"),
        *(project_dir / "macros").rglob("*"),
        project_dir / "dbt_project.yml",
    ]
    digest = hashlib.sha256()
    for path in sorted(p for p in files if p.is_file()):
        digest.update(f"{path.relative_to(project_dir).as_posix()}\n".encode())
        digest.update(path.read_bytes())
        digest.update(b"\0")
    digest.update("\0".join(dbt_arguments).encode())
    return digest.hexdigest()


def catalog_is_current(catalog_dir: Path, fingerprint: str) -> bool:
    """Whether the published catalog was made from this fingerprint."""
    recorded = Path(catalog_dir) / FINGERPRINT_FILE
    return (
        (Path(catalog_dir) / CATALOG_PAGE).is_file()
        and recorded.is_file()
        and recorded.read_text().strip() == fingerprint
    )


def publish_catalog(static_page: Path, catalog_dir: Path, fingerprint: str) -> Path:
    """Publish dbt's static docs page as the use case's catalog (atomically), then record its
    fingerprint."""
    catalog_dir = Path(catalog_dir)
    catalog_dir.mkdir(parents=True, exist_ok=True)
    page = catalog_dir / CATALOG_PAGE
    with atomic_output(page) as tmp:
        shutil.copyfile(static_page, tmp)
    atomic_write_bytes(catalog_dir / FINGERPRINT_FILE, f"{fingerprint}\n".encode())
    return page


def model_anchor(model: str) -> str:
    """The catalog page's fragment that opens ``model`` (dbt's docs site routes)."""
    return f"#!/model/model.blueprint.{model}"
