"""Scored traffic, monitoring reports and the retraining decision."""
