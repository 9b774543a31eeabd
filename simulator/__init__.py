"""The outside world of Blueprint: a simulated card-payment world and its three source systems.

Standalone on purpose: ``orchestration/`` never imports it, and it imports nothing of the pipeline.
"""

from simulator.config import WorldConfig
from simulator.outbox import deliver, held_days
from simulator.run import simulate

__all__ = ["WorldConfig", "deliver", "held_days", "simulate"]
