"""A search sweep through Celery, all real processes: redis-server, `tinytrain worker`s,
`tinytrain serve` (on the test's PostgreSQL database), over HTTP."""

from collections.abc import Callable
from typing import Any

import pytest

from tests.api.test_sweeps import ANY, ENDED, trials, wait_sweep
from tests.support.celery import Stack
from tests.support.data import sine_points

# Three batches of two trials of 20,000 points in batches of 1: a second or two each on two cores.
BATCHES: dict[str, Any] = {
    "dataset": sine_points(20_000, seed=5),
    "hyperparameters": {"batch_size": 1, "epochs": 500, "dtype": "float64"},
    "search": {
        "sampler": "tpe",
        "trials": 6,
        "seed": 2,
        "batch": 2,
        "learning_rate": {"min": 0.0005, "max": 0.005, "log": True},
        "seed_values": [0, 1],
    },
}


# With halving, each batch of two ends one trial at its first rung (150 epochs), pruned.
@pytest.mark.parametrize("halving", [None, {"min_epochs": 150, "reduction_factor": 3}], ids=["full", "halving"])
def test_a_worker_killed_mid_search_is_replaced_and_the_search_ends_as_an_uninterrupted_one(
    celery_stack: Callable[..., Stack], halving: dict[str, int] | None
) -> None:
    stack = celery_stack(workers=1, lease_seconds="2")
    body = {**BATCHES, **({"halving": halving} if halving else {})}
    with stack.server.client() as c:
        sweep_id = c.post("/v1/sweeps", json=body).json()["id"]
        # The first batch is stored; the second trains when its worker dies.
        stored = wait_sweep(c, sweep_id, "running", timeout=60, succeeded=1)
        stack.workers[0].kill()
        ended = sum(stored["trials"][s] for s in ("succeeded", "failed", "pruned"))
        assert stored["status"] == "running" and ended < 6
        assert (stored["trials"]["running"], stored["trials"]["queued"]) == (2, 4 - ended)
        # Queued again once the lease expired: the stored batch stays, the rest wait.
        lost = wait_sweep(c, sweep_id, "running", timeout=30, queued=6 - ended)
        assert lost["trials"]["running"] == 0 and lost["attempts"] == 1
        stack.add_worker()
        sweep = wait_sweep(c, sweep_id, *ENDED, timeout=120)
        assert (sweep["status"], sweep["error"], sweep["attempts"]) == ("succeeded", None, 2)
        whole = 3000 if halving is None else 3 * (500 + 150)
        assert sweep["progress"] == {"epochs_completed": whole, "epochs": whole}
        assert sweep["trials"]["pruned"] == (0 if halving is None else 3)
        logs = "".join(p.read_text() for p in stack.workdir.glob("worker-*.log"))
        assert logs.count("succeeded in") == 1  # the chunk's task ended once: in the new worker

        fresh = wait_sweep(c, c.post("/v1/sweeps", json=body).json()["id"], *ENDED, timeout=120)
        assert (fresh["status"], fresh["attempts"]) == ("succeeded", 1)
        rerun, uninterrupted = trials(c, sweep_id), trials(c, fresh["id"])
        assert [(t["hyperparameters"], t["status"], t["objective"]) for t in rerun] == [
            (t["hyperparameters"], t["status"], t["objective"]) for t in uninterrupted
        ]
        assert [t["result"] for t in rerun] == [{**t["result"], "training_seconds": ANY} for t in uninterrupted]
        assert len({t["hyperparameters"]["learning_rate"] for t in rerun}) == 6
