"""The outside world of Blueprint: a simulated card-payment world and its three source systems
(and, in :mod:`simulator.churn`, a subscription service's five).

Standalone on purpose: ``orchestration/`` never imports it, and it imports nothing of the pipeline.
"""

from simulator.config import WorldConfig
from simulator.outbox import deliver, held_days
from simulator.run import WORLD_FILE, outbox_dir, simulate
from simulator.worlds import World

__all__ = ["WORLD", "WorldConfig", "deliver", "held_days", "simulate"]


def _simulate_world(
    home, config: WorldConfig, overwrite: bool, hold_from: int | None, progress: bool
) -> str:
    world = simulate(config, home, progress=progress, overwrite=overwrite, hold_from=hold_from)
    summary = world["summary"]
    return (f"Simulated {summary['n_transactions']:,} transactions over {config.n_days} days "
            f"(fraud rate {summary['fraud_rate']:.2%})")


def _exists(home) -> bool:
    from simulator.run import SIMULATOR_DIR

    return (home / SIMULATOR_DIR / WORLD_FILE).exists()


WORLD = World(
    config=WorldConfig, simulate=_simulate_world, held_days=held_days, deliver=deliver,
    exists=_exists, outbox=outbox_dir,
)
"""What ``blueprint simulate --usecase fraud`` runs (:mod:`simulator.worlds`)."""
