"""Pseudonymization, the DuckDB functions dbt calls, and the feature definitions serving runs."""
