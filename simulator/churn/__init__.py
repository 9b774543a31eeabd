"""A second simulated world: a subscription streaming service whose customers churn.

Five source systems deliver daily files (accounts, usage, billing, tickets, cancellations).
Accounts churn after weeks of fading usage, failed payments, technical problems or a price
increase, some without warning; from ``drift_from`` a competitor takes mobile viewers, sooner.
The generative process and its measured churn rate: ``simulator/churn/README.md``.

Standalone like the fraud world: ``orchestration/`` never imports it, and it imports nothing
of the pipeline. It shares the fraud world's file conventions (:mod:`simulator.sources`) and
faults (:mod:`simulator.faults`), and never touches the fraud world's files.
"""

from simulator.churn.config import ChurnConfig
from simulator.churn.outbox import deliver, held_days
from simulator.churn.run import simulate

__all__ = ["ChurnConfig", "deliver", "held_days", "simulate"]
