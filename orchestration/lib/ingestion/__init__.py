"""Landing files to raw snapshots: source contracts, their enforcement, what needs ingesting."""
