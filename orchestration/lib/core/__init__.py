"""What every stage uses: atomic file writes and the persistent Dagster instance's location."""
