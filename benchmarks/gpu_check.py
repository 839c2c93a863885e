"""The checks and numbers that need a CUDA GPU, in one run: `make gpu-check`.

    PYTHONPATH=. python3 -m benchmarks.gpu_check [--interpret]

Runs from the source tree with the machine's own python, torch and Triton (no install, no
.venv): it needs numpy and numba (the CPU engine and the batch order) besides them, and
neither numba-cuda nor CuPy. It

  1. runs tests/model/test_gpu.py's CUDA tests with pytest, where pytest is installed;
  2. times bench-fleet's GPU columns against the CPU fleet engine at a few K (benchmarks/fleet.py);
  3. trains a halving sweep of K trials with the fleet engine on the GPU and checks that each
     trial equals the job with its epochs (a pruned trial: its rung), bit for bit, on the GPU;

and prints one table. Exit status 1 when a check fails, 2 where there is no CUDA device (or a
module it needs is missing). --interpret: tiny sizes, the kernel in Triton's interpreter on the
CPU, the pytest step left out: a smoke run of this script where there is no GPU (its numbers
mean nothing).
"""

import argparse
import dataclasses
import importlib.util
import os
import subprocess
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where they run: after the check that they are installed
    import numpy.typing as npt

    from model import TrainConfig

NEEDED = ("numpy", "numba", "torch", "triton")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interpret", action="store_true", help="tiny sizes in Triton's interpreter, no GPU")
    args = parser.parse_args()
    missing = [name for name in NEEDED if importlib.util.find_spec(name) is None]
    if missing:
        print(f"gpu-check: {', '.join(missing)} not installed for {sys.executable}: nothing checked")
        return 2
    if args.interpret:
        os.environ["TRITON_INTERPRET"] = "1"  # before model.gpu is imported: Triton reads it then
    import torch

    if not args.interpret and not torch.cuda.is_available():
        print("gpu-check: no CUDA device here (torch.cuda.is_available() is False): nothing checked")
        return 2
    return run(interpret=args.interpret)


def run(*, interpret: bool) -> int:
    import torch
    import triton

    import model
    from benchmarks import fleet

    where = "Triton's interpreter on the CPU" if interpret else torch.cuda.get_device_name()
    print(
        f"gpu-check: {where}, torch {torch.__version__}, triton {triton.__version__}, python {sys.version.split()[0]}"
    )
    tests_ok = True if interpret else pytest_step()
    n, ks, gpu_epochs = (64, (2, 5), 9) if interpret else (fleet.N, (64, 1024, 16384), fleet.EPOCHS)
    torch_device = "cpu" if interpret else "cuda"
    x, y = fleet.data(n)
    model.warm_up()
    print(f"\nM model-samples/s, n = {n}, B = {fleet.B}, float32; trial == job: a halving sweep on the GPU")
    print("     K | ep CPU | ep GPU | CPU fleet | torch GPU | kernel GPU | kernel/CPU | trial == job")
    same_all = True
    for k in ks:
        cpu_epochs = gpu_epochs if interpret else fleet.epochs_for(k, 4.2e8)
        fleet.torch_fleet(x, y, k, 1, torch_device)  # warm-up: kernels compiled, memory pooled
        fleet.engine_fleet(x, y, k, 1, "cuda")
        cpu = 1 / fleet.engine_fleet(x, y, k, cpu_epochs, "cpu")
        torch_gpu = 1 / fleet.torch_fleet(x, y, k, gpu_epochs, torch_device)
        kernel = 1 / fleet.engine_fleet(x, y, k, gpu_epochs, "cuda")
        same = trials_equal_jobs(x, y, fleet.configs(k, gpu_epochs if interpret else 27, "cuda"))
        same_all &= same
        cells = [f"{k:>6}", f"{cpu_epochs:>6}", f"{gpu_epochs:>6}"]
        cells += [f"{cpu / 1e6:>9.1f}", f"{torch_gpu / 1e6:>9.1f}", f"{kernel / 1e6:>10.1f}", f"{kernel / cpu:>10.2f}"]
        print(" | ".join([*cells, "yes" if same else "NO"]), flush=True)
    ok = tests_ok and same_all
    print(f"\ngpu-check: {'every check passed' if ok else 'a check FAILED'}")
    return 0 if ok else 1


def pytest_step() -> bool:
    """Whether tests/model/test_gpu.py's CUDA tests pass in a pytest of this python (True where
    pytest is missing: said in a line, and the checks of the table still run)."""
    if importlib.util.find_spec("pytest") is None:
        print("pytest: not installed for this python, so the CUDA tests were not run (the checks below still are)")
        return True
    # No conftest: the tests' own (tests/conftest.py) imports the service, which this python may lack.
    command = [sys.executable, "-m", "pytest", "-q", "--noconftest", "-p", "no:cacheprovider"]
    command += ["-o", "addopts=", "tests/model/test_gpu.py", "-k", "cuda"]
    t0 = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    last = (done.stdout.strip().splitlines() or ["(no output)"])[-1]
    print(f"pytest tests/model/test_gpu.py -k cuda: {last} ({time.perf_counter() - t0:.0f} s)")
    # Passed, and none skipped: on a GPU a skip means the CUDA tests did not run.
    ok = done.returncode == 0 and " passed" in last and "skipped" not in last
    if not ok:
        print(done.stdout[-4000:], done.stderr[-2000:], sep="\n")
    return ok


def trials_equal_jobs(x: "npt.ArrayLike", y: "npt.ArrayLike", configs: "list[TrainConfig]") -> bool:
    """A halving sweep of configs on the GPU; the first trial to end at each epoch count against
    the job of its config with those epochs, on the GPU too: the same parameters and histories."""
    import model
    from model.halving import Halving

    trained = model.train_fleet(x, y, configs, halving=Halving(min_epochs=3, reduction_factor=3))
    firsts = {t.epochs_completed: k for k, t in reversed(list(enumerate(trained)))}
    for epochs, k in sorted(firsts.items()):
        alone = model.train(x, y, dataclasses.replace(configs[k], epochs=epochs))
        trial = trained[k]
        if (trial.parameters, trial.loss_history) != (alone.parameters, alone.loss_history):
            print(f"trial {k} ({epochs} epochs, pruned {trial.pruned}) differs from its job on {trial.device}")
            return False
    if len(firsts) < 2:
        print(f"the halving sweep of {len(configs)} trials pruned none: nothing to compare")
    return len(firsts) > 1


if __name__ == "__main__":
    sys.exit(main())
