"""The validation protocol, model selection, metrics, the promotion gate and model lineage."""
