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
from simulator.churn.run import WORLD_FILE, outbox_dir, record_dir, simulate
from simulator.worlds import World

__all__ = ["WORLD", "ChurnConfig", "deliver", "held_days", "simulate"]


def _simulate_world(
    home, config: ChurnConfig, overwrite: bool, hold_from: int | None, progress: bool
) -> str:
    summary = simulate(
        home, config, overwrite=overwrite,
        hold_from=None if hold_from is None else config.day(hold_from),
    )
    return (f"Simulated {config.n_accounts:,} accounts over {config.n_days} days "
            f"(30-day churn rate {summary['churn_rate_30d']:.2%})")


def _exists(home) -> bool:
    return (record_dir(home) / WORLD_FILE).exists()


WORLD = World(
    config=ChurnConfig, simulate=_simulate_world, held_days=held_days, deliver=deliver,
    exists=_exists, outbox=outbox_dir,
)
"""What ``blueprint simulate --usecase churn`` runs (:mod:`simulator.worlds`)."""
