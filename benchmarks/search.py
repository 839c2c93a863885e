"""Search benchmark: the same search space seven ways side by side, on two datasets.

    python -m benchmarks.search [--trials 243]

Datasets (n = 1,000, 20% validation, float64): the noisy sine (x ~ U[-3, 3], y = sin x +
0.1 N(0, 1)) and a step (y = 1 for x > 0.5, else 0, plus 0.05 N(0, 1)), where a trial's seed
(its initial parameters) decides whether it finds the edge. The space: learning rate log-uniform
over three decades (0.003 .. 3), batch size 4 .. 64, seed 0 .. 7; the objective the validation
loss after 243 epochs.

  (a) every trial at full epochs: a tinytrain random sweep (the fleet engine, all cores);
  (b) tinytrain halving over the same trials (min_epochs 3, reduction factor 3, 1 bracket);
      and the same with 3 Hyperband brackets;
  (c) a tinytrain search sweep, `search: {"sampler": "tpe", "batch": 32}` (jobs/search.py): 32
      trials asked of TPE at a time, each batch one engine call, its outcomes told before the
      next is asked; and the same with halving (1 bracket, the same rungs as (b)) in each batch;
  (d) Optuna: TPE with SuccessiveHalvingPruner (the same rungs), as an Optuna user writes it:
      each trial calls tinytrain's single-job engine rung by rung (a run of `rung` epochs from
      epoch 0: the engine does not continue a finished job) and reports to the pruner;
  (e) Ray Tune: random search with ASHAScheduler (the same rungs, 1 bracket), as a Ray user
      writes it: a function trainable reports the validation loss every epoch. It holds the
      single-job engine's fleet of one and advances it an epoch per call, so a trial trains the
      epochs one model.train would, each once, and ends at the report where ASHA stops it.
      Ray runs locally on 2 CPUs (a trial each); its wall seconds start once Ray is up.

Columns: the best objective, the model-epochs trained, wall seconds, and the seconds until the
best so far is within 1% of (a)'s best ("-" if never). A tinytrain sweep returns its trials
together, so its time to 1% is its wall time when its best is within 1%.
"""

import argparse
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

import model
from jobs import search
from jobs.hyperparameters import brackets, config_from, halving_of, random_trials
from jobs.results import trial_outcome
from model.fleet import Fleet
from model.halving import Halving
from model.training import CpuEngine

N, EPOCHS, MIN_EPOCHS, FACTOR, BATCH = 1000, 243, 3, 3, 32
BASE: dict[str, Any] = {
    "learning_rate": 0.1,
    "batch_size": 32,
    "epochs": EPOCHS,
    "seed": 0,
    "shuffle": True,
    "drop_last": False,
    "validation_fraction": 0.2,
    "dtype": "float64",
    "device": "cpu",
    "initial_parameters": None,
    "early_stopping": None,
}
SPACE: dict[str, Any] = {
    "learning_rate": {"min": 0.003, "max": 3.0, "log": True},
    "batch_size": {"min": 4, "max": 64},
    "seed_values": list(range(8)),
}
Points = tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]


def sine() -> Points:
    rng = np.random.default_rng(0)
    x = rng.uniform(-3, 3, N)
    return x, np.sin(x) + 0.1 * rng.normal(size=N)


def step() -> Points:
    rng = np.random.default_rng(1)
    x = rng.uniform(-3, 3, N)
    return x, (x > 0.5).astype(np.float64) + 0.05 * rng.normal(size=N)


def objective(result: model.TrainResult) -> float:
    history = result.validation_loss_history
    return history[-1] if history and not result.diverged else math.inf


class Row:
    def __init__(self, name: str) -> None:
        self.name, self.best, self.epochs, self.seconds = name, math.inf, 0, 0.0
        self.to_target: float | None = None

    def count(self, trained: list[model.TrainResult], target: float, t0: float) -> None:
        """An engine call's trials: their epochs, the best of those not pruned, when it reached target."""
        self.epochs += sum(r.epochs_completed for r in trained)
        self.best = min([self.best, *(objective(r) for r in trained if not r.pruned)])
        if self.to_target is None and self.best <= target:
            self.to_target = time.perf_counter() - t0


def configs(trials: int) -> list[dict[str, Any]]:
    return [{**BASE, **v} for v in random_trials({"trials": trials, "seed": 7, **SPACE})]


def full(points: Points, hps: list[dict[str, Any]]) -> Row:
    row = Row("(a) all trials, full epochs")
    t0 = time.perf_counter()
    trained = model.train_fleet(*points, [config_from(hp) for hp in hps])
    row.seconds = time.perf_counter() - t0
    row.best = min(objective(r) for r in trained)
    row.epochs = sum(r.epochs_completed for r in trained)
    return row


def halving(points: Points, hps: list[dict[str, Any]], brackets_count: int, target: float) -> Row:
    """As a halving sweep runs: one engine call per bracket (a chunk each)."""
    settings = {"min_epochs": MIN_EPOCHS, "reduction_factor": FACTOR, "brackets": brackets_count}
    row = Row(f"(b) halving, {brackets_count} bracket{'s' if brackets_count > 1 else ''}")
    t0 = time.perf_counter()
    for b, lo, hi in brackets(settings, len(hps)):
        plan = halving_of(settings, "final_validation_loss", b)
        trained = model.train_fleet(*points, [config_from(hp) for hp in hps[lo:hi]], halving=plan)
        row.count(trained, target, t0)
    row.seconds = time.perf_counter() - t0
    return row


def tpe(points: Points, trials: int, halved: bool, target: float) -> Row:
    """As a search sweep runs: batches asked of TPE from the trials told so far, one engine call each."""
    spec = {"sampler": "tpe", "trials": trials, "seed": 7, "batch": BATCH, **SPACE}
    settings = {"min_epochs": MIN_EPOCHS, "reduction_factor": FACTOR, "brackets": 1}
    row = Row(f"(c) search: tpe, batch {BATCH}{', halving' if halved else ''}")
    told: list[search.Told] = []
    t0 = time.perf_counter()
    for lo, _ in search.batches(spec):
        hps = [{**BASE, **v} for v in search.ask(spec, told)]
        plan = halving_of(settings, "final_validation_loss", search.bracket(spec, settings, lo)) if halved else None
        trained = model.train_fleet(*points, [config_from(hp) for hp in hps], halving=plan)
        outcomes = [trial_outcome(r, "final_validation_loss") for r in trained]
        told += [search.told({"hyperparameters": hp, **o}) for hp, o in zip(hps, outcomes, strict=True)]
        row.count(trained, target, t0)
    row.seconds = time.perf_counter() - t0
    return row


def optuna_sha(points: Points, trials: int, target: float) -> Row:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    row = Row("(d) Optuna TPE + SuccessiveHalvingPruner")
    rungs = Halving(MIN_EPOCHS, FACTOR).rungs(EPOCHS)
    t0 = time.perf_counter()

    def run(trial: Any) -> float:
        hp = {
            **BASE,
            "learning_rate": trial.suggest_float("learning_rate", 0.003, 3.0, log=True),
            "batch_size": trial.suggest_int("batch_size", 4, 64),
            "seed": trial.suggest_categorical("seed", list(range(8))),
        }
        value = math.inf
        for rung in rungs:
            result = model.train(*points, config_from({**hp, "epochs": rung}))
            row.epochs += result.epochs_completed
            value = objective(result)
            if result.diverged:
                raise optuna.TrialPruned()
            trial.report(value, rung)
            if trial.should_prune():
                raise optuna.TrialPruned()
        if value < row.best:
            row.best = value
            if row.to_target is None and value <= target:
                row.to_target = time.perf_counter() - t0
        return value

    pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=MIN_EPOCHS, reduction_factor=FACTOR)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=7), pruner=pruner)
    study.optimize(run, n_trials=trials)
    row.seconds = time.perf_counter() - t0
    return row


def ray_asha(points: Points, trials: int, target: float) -> Row:
    # Ray's per-trial JSON, CSV and TensorBoard logs are no part of the search: not written. Its
    # older progress output is the one that verbose=0 silences (the newer prints its configuration).
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import BasicVariantGenerator

    row = Row("(e) Ray Tune ASHA")

    def run(config: dict[str, Any], points: Points) -> None:
        fleet = Fleet(*points, [config_from({**BASE, **config})])
        engine = CpuEngine(fleet)
        while fleet.running().size:
            engine.run(1)
            result = fleet.result(0, seconds=0.0, device="cpu", stopped=False)
            # time.time(): the trials report from Ray's worker processes.
            tune.report({"validation_loss": objective(result), "epoch": result.epochs_completed, "at": time.time()})

    space = {
        "learning_rate": tune.loguniform(0.003, 3.0),
        "batch_size": tune.randint(4, 65),  # its upper bound excluded
        "seed": tune.choice(list(range(8))),
    }
    scheduler = ASHAScheduler(
        time_attr="epoch", max_t=EPOCHS, grace_period=MIN_EPOCHS, reduction_factor=FACTOR, brackets=1
    )
    with tempfile.TemporaryDirectory(prefix="ray-") as logs:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR, _temp_dir=logs)
        try:
            tuner = tune.Tuner(
                tune.with_parameters(run, points=points),
                param_space=space,
                tune_config=tune.TuneConfig(
                    metric="validation_loss",
                    mode="min",
                    search_alg=BasicVariantGenerator(random_state=7),
                    scheduler=scheduler,
                    num_samples=trials,
                    reuse_actors=True,
                ),
                run_config=tune.RunConfig(storage_path=logs, verbose=0),
            )
            t0, started = time.perf_counter(), time.time()
            grid = tuner.fit()
            row.seconds = time.perf_counter() - t0
        finally:
            ray.shutdown()
    if grid.errors:
        raise RuntimeError(f"{len(grid.errors)} Ray trials failed: {grid.errors[0]}")
    # Each trial's last report (a trial whose initial loss is not finite trains nothing, reports nothing).
    last = [m for i in range(len(grid)) if (m := grid[i].metrics) is not None]
    row.epochs = sum(m["epoch"] for m in last)
    finished = [m for m in last if m["epoch"] == EPOCHS]
    row.best = min([math.inf, *(m["validation_loss"] for m in finished)])
    reached = [m["at"] - started for m in finished if m["validation_loss"] <= target]
    row.to_target = min(reached) if reached else None
    return row


def table(name: str, rows: list[Row], reference: Row) -> None:
    print(f"\n{name}: (a)'s best {reference.best:.6g}, 1% target {reference.best * 1.01:.6g}")
    heads = f"{'best objective':>14} | {'model-epochs':>12} | {'% of (a)':>8} | {'seconds':>8} | {'s to 1%':>8}"
    print(f"| {'run':<42} | {heads} |")
    print(f"|{'-' * 44}|{'-' * 16}|{'-' * 14}|{'-' * 10}|{'-' * 10}|{'-' * 10}|")
    for r in rows:
        to = f"{r.to_target:.2f}" if r.to_target is not None else "-"
        share = 100 * r.epochs / reference.epochs
        print(f"| {r.name:<42} | {r.best:>14.6g} | {r.epochs:>12} | {share:>7.1f}% | {r.seconds:>8.2f} | {to:>8} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=243)
    args = parser.parse_args()
    model.warm_up()
    datasets: list[tuple[str, Callable[[], Points]]] = [("noisy sine", sine), ("step", step)]
    for name, make in datasets:
        points = make()
        hps = configs(args.trials)
        reference = full(points, hps)
        target = reference.best * 1.01
        reference.to_target = reference.seconds
        rows = [reference, halving(points, hps, 1, target), halving(points, hps, 3, target)]
        rows += [tpe(points, args.trials, False, target), tpe(points, args.trials, True, target)]
        rows.append(optuna_sha(points, args.trials, target))
        rows.append(ray_asha(points, args.trials, target))
        table(name, rows, reference)


if __name__ == "__main__":
    main()
