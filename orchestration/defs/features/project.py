"""The dbt project handle, in a module of its own.

``dagster-dbt project prepare-and-package`` imports this module to build the manifest, and the
module holding ``@dbt_assets`` cannot import before the manifest exists.
"""

from dagster_dbt import DbtProject

from orchestration.settings import DBT_PROJECT_DIR

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
