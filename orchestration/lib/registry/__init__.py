"""The model registry: immutable facts in the model store, status in an append-only log."""
