"""Fleet benchmark: K trainings of one dataset, four ways side by side in one run.

    python -m benchmarks.fleet [--quick] [--service]

Same data for all: n = 1,024 points, x ~ U[-3, 3], y = sin x + 0.1 N(0, 1), float32, B = 32,
learning rates log-spaced over a decade (0.01 .. 0.1), every trial its own seed; each epoch
every mini-batch step and the exact MSE over all points. Rates are model-samples per second:
trials x points x epochs / seconds.

  (a) K separate single-job engine calls, one after another (what K jobs cost today);
  (b) the fleet a PyTorch user writes: parameters stacked [K, 7], analytic gradients, one step
      a few batched ops on [K, B] tensors, each trial its own batch order;
  (c) tinytrain's fleet engine on the CPU, all cores;
  (d) with a CUDA device: (b) on the GPU and tinytrain's fleet kernel.

At K = 16,384 (b) runs 6 epochs and (c) 25 (every epoch is the same work; the fleet's
per-trial set-up, about 20 us a trial in Python, weighs more in a shorter run, which counts
against (c)), and (a) runs 256 of its K calls (each call is the same work, all 100 epochs); the
"ep" columns say what (b) and (c) ran.

--service adds the service comparison: a 1,000-trial sweep (n = 1,000, 100 epochs) from POST
to its last trial's result, against the same trials sent as 1,000 jobs by 16 concurrent clients.
"""

import argparse
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import numpy.typing as npt
import torch

import model
from model.config import Device
from model.training import cuda_available

N, B, EPOCHS = 1024, 32, 100
Array = npt.NDArray[np.float32]


def data(n: int = N) -> tuple[Array, Array]:
    rng = np.random.default_rng(0)
    x = rng.uniform(-3, 3, n).astype(np.float32)
    return x, (np.sin(x) + 0.1 * rng.normal(0, 1, n)).astype(np.float32)


def configs(k: int, epochs: int, device: str) -> list[model.TrainConfig]:
    rates = np.logspace(-2, -1, k) if k > 1 else np.array([0.05])
    return [
        model.TrainConfig(learning_rate=float(r), batch_size=B, epochs=epochs, seed=s, device=device)  # type: ignore[arg-type]
        for s, r in enumerate(rates)
    ]


def separate(x: Array, y: Array, k: int) -> float:
    """(a): seconds per model-sample of single-job engine calls (all 100 epochs each), one after another."""
    epochs = EPOCHS
    calls = configs(k, epochs, "cpu")[:256]
    t0 = time.perf_counter()
    for config in calls:
        model.train(x, y, config)
    return (time.perf_counter() - t0) / (len(calls) * len(x) * epochs)


def torch_fleet(x: Array, y: Array, k: int, epochs: int, device: str) -> float:
    """(b): seconds per model-sample of the stacked-parameters PyTorch fleet."""
    dev = torch.device(device)
    xt, yt = torch.from_numpy(x).to(dev), torch.from_numpy(y).to(dev)
    gen = torch.Generator(dev).manual_seed(0)
    p = (torch.rand(k, 7, generator=gen, device=dev) * 2 - 1) * 0.7
    lr = torch.logspace(-2, -1, k, device=dev)[:, None]
    n = len(x)

    def forward(p: torch.Tensor, xb: torch.Tensor) -> tuple[torch.Tensor, ...]:
        w11, w12, b11, b12, w21, w22, b2 = (c[:, None] for c in p.unbind(1))
        u1, u2 = torch.sigmoid(xb * w11 + b11), torch.sigmoid(xb * w12 + b12)
        return u1, u2, w21 * u1 + w22 * u2 + b2, w21, w22

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    sync()
    t0 = time.perf_counter()
    with torch.no_grad():
        for _ in range(epochs):
            order = torch.argsort(torch.rand(k, n, generator=gen, device=dev), dim=1)  # each trial its own
            for s in range(0, n, B):
                idx = order[:, s : s + B]
                xb, yb = xt[idx], yt[idx]
                u1, u2, yhat, w21, w22 = forward(p, xb)
                g = (2.0 / xb.shape[1]) * (yhat - yb)
                d1, d2 = g * w21 * u1 * (1 - u1), g * w22 * u2 * (1 - u2)
                grad = torch.stack(
                    [
                        (d1 * xb).sum(1),
                        (d2 * xb).sum(1),
                        d1.sum(1),
                        d2.sum(1),
                        (g * u1).sum(1),
                        (g * u2).sum(1),
                        g.sum(1),
                    ],
                    dim=1,
                )
                p -= lr * grad
            loss = ((forward(p, xt[None, :])[2] - yt).double() ** 2).mean(1)  # the exact per-epoch loss
            assert loss.shape == (k,)
    sync()
    return (time.perf_counter() - t0) / (k * n * epochs)


def engine_fleet(x: Array, y: Array, k: int, epochs: int, device: str) -> float:
    """(c) and (d): seconds per model-sample of tinytrain's fleet engine."""
    fleet = configs(k, epochs, device)
    t0 = time.perf_counter()
    model.train_fleet(x, y, fleet)
    return (time.perf_counter() - t0) / (k * len(x) * epochs)


def epochs_for(k: int, samples: float) -> int:
    """All 100 epochs where that is at most about `samples` model-samples, fewer above."""
    return max(1, min(EPOCHS, round(samples / (k * N))))


def row(k: int, epochs: tuple[int, int], rates: dict[str, float]) -> str:
    a = rates["a"]
    cells = [f"{k:>6}", f"{epochs[0]:>4}", f"{epochs[1]:>4}"] + [
        f"{rates[c] / 1e6:>10.1f}" if c in rates else f"{'-':>10}" for c in "abcde"
    ]
    ratios = [f"{rates['c'] / rates['b']:>6.2f}", f"{rates['c'] / a:>6.2f}"]
    if "e" in rates:
        ratios += [f"{rates['e'] / rates['d']:>7.1f}"]
    return " | ".join(cells + ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer epochs at big K (a smoke run)")
    parser.add_argument("--service", action="store_true", help="also the sweep-versus-jobs service comparison")
    args = parser.parse_args()
    x, y = data()
    model.warm_up()
    gpu = cuda_available()
    cores = len(os.sched_getaffinity(0))
    print(
        f"n = {N}, B = {B}, float32, {cores} cores, torch {torch.__version__} with {torch.get_num_threads()} threads"
        f"{', GPU ' + torch.cuda.get_device_name() if gpu else ', no GPU'}"
    )
    print("M model-samples/s: (a) separate single jobs, (b) PyTorch fleet, (c) fleet engine CPU,")
    print("(d) PyTorch fleet GPU, (e) fleet kernel GPU; ratios c/b, c/a, e/d\n")
    print(
        "     K | ep b | ep c |        (a) |        (b) |        (c) |        (d) |        (e) |    c/b |    c/a | e/d"
    )
    for k in (1, 64, 1024, 16384):
        scale = 0.2 if args.quick else 1.0
        epochs = (epochs_for(k, 1.1e8 * scale), epochs_for(k, 4.2e8 * scale))
        rates = {
            "a": 1 / separate(x, y, k),
            "b": 1 / torch_fleet(x, y, k, epochs[0], "cpu"),
            "c": 1 / engine_fleet(x, y, k, epochs[1], "cpu"),
        }
        if gpu:
            gpu_epochs = EPOCHS
            torch_fleet(x, y, k, 1, "cuda")  # warm-up: kernels compiled, memory pooled
            engine_fleet(x, y, k, 1, "cuda")
            rates["d"] = 1 / torch_fleet(x, y, k, gpu_epochs, "cuda")
            rates["e"] = 1 / engine_fleet(x, y, k, gpu_epochs, "cuda")
        print(row(k, epochs, rates), flush=True)
    if gpu:
        print("\nOne job, K = 1, large batches: CPU engine vs GPU kernel (M samples/s)")
        for batch in (4096, 16384):
            n = 65536
            xs, ys = data(n)
            speed: dict[str, float] = {}
            devices: tuple[Device, ...] = ("cpu", "cuda")
            for device in devices:
                config = model.TrainConfig(batch_size=batch, epochs=20, device=device)
                model.train(xs, ys, config)
                t0 = time.perf_counter()
                model.train(xs, ys, config)
                speed[device] = n * 20 / (time.perf_counter() - t0)
            print(
                f"B = {batch:>5}: cpu {speed['cpu'] / 1e6:8.1f}  cuda {speed['cuda'] / 1e6:8.1f}  "
                f"cuda/cpu {speed['cuda'] / speed['cpu']:.2f}"
            )
    if args.service:
        service_comparison()


def service_comparison(trials: int = 1000, n: int = 1000, epochs: int = 100, clients: int = 16) -> None:
    """A sweep from POST to its last trial's result, against the same trials as separate jobs."""
    import tempfile
    from pathlib import Path

    import httpx

    from tests.support.data import sine_points
    from tests.support.keys import bearer
    from tests.support.server import Server, server_env

    points = sine_points(n)
    rates = [float(r) for r in np.logspace(-2, -1, trials)]
    base = {"batch_size": B, "epochs": epochs}
    work = Path(tempfile.mkdtemp(prefix="tinytrain-bench-fleet-"))
    env = server_env(work, rate_limit="100000/second", max_active_jobs_per_owner="100000")
    server = Server(work, env)
    server.start()
    try:
        with server.client() as c:
            dataset_id = c.post("/v1/datasets", json=points).json()["id"]
            t0 = time.perf_counter()
            sweep = c.post(
                "/v1/sweeps", json={"dataset_id": dataset_id, "hyperparameters": base, "grid": {"learning_rate": rates}}
            ).json()
            while (got := c.get(f"/v1/sweeps/{sweep['id']}").json())["status"] in ("queued", "running"):
                time.sleep(0.05)
            last = c.get(f"/v1/sweeps/{sweep['id']}/trials/{trials - 1}").json()
            sweep_seconds = time.perf_counter() - t0
            assert got["status"] == "succeeded" and last["result"] is not None, got

        def one(rate: float) -> None:
            with httpx.Client(base_url=server.url, headers=bearer(server.key), timeout=60) as client:
                body = {"dataset_id": dataset_id, "hyperparameters": {**base, "learning_rate": rate}}
                job = client.post("/v1/jobs", json=body).json()
                while (job := client.get(f"/v1/jobs/{job['id']}").json())["status"] in ("queued", "running"):
                    time.sleep(0.05)
                assert job["status"] == "succeeded", job
                client.get(f"/v1/jobs/{job['id']}/result").raise_for_status()

        t0 = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(one, rates))
        jobs_seconds = time.perf_counter() - t0
    finally:
        server.stop()
    print(f"\nService (local executor, 2 pool processes): {trials} trials, n = {n}, {epochs} epochs")
    print(f"  one sweep, POST to last trial's result: {sweep_seconds:8.2f} s")
    print(f"  {trials} jobs by {clients} clients:            {jobs_seconds:8.2f} s")
    print(f"  the sweep is {jobs_seconds / sweep_seconds:.1f}x sooner")


if __name__ == "__main__":
    main()
