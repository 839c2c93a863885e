"""Engine benchmark: the typical PyTorch loop, plain C and tinytrain's engine, side by side.

    python -m benchmarks.engine [--quick]

Same data for all (n = 65,536, x ~ U[-3, 3], y = sin x + 0.1 N(0, 1), float32, one thread),
same work per epoch (shuffle, mini-batch SGD steps, the exact MSE over all points), batch sizes
32, 256 and 4096. Prints samples per second (median of repeats) and ratios; the engine's
first-call (compile) time is measured in fresh processes; GPU rows where CUDA is present.
"""

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"

import ctypes  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402
import torch  # noqa: E402

import model  # noqa: E402

N = 65_536
BATCHES = (32, 256, 4096)
QUICK = "--quick" in sys.argv
REPEATS = 3 if QUICK else 7
Array = npt.NDArray[np.float64]


def data(dtype: str) -> tuple[Array, Array]:
    rng = np.random.default_rng(0)
    x = rng.uniform(-3.0, 3.0, N)
    return x.astype(dtype), (np.sin(x) + 0.1 * rng.standard_normal(N)).astype(dtype)


def typical_pytorch(x: Array, y: Array, batch: int, epochs: int, device: str) -> float:
    """What a typical PyTorch user writes. Returns seconds for `epochs` epochs (incl. the loss)."""
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(1, 2), nn.Sigmoid(), nn.Linear(2, 1)).to(device)
    xt, yt = torch.tensor(x).view(-1, 1).to(device), torch.tensor(y).view(-1, 1).to(device)
    loader = DataLoader(TensorDataset(xt, yt), batch_size=batch, shuffle=True)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    loss_fn = nn.MSELoss()
    start = time.perf_counter()
    for _ in range(epochs):
        for xb, yb in loader:
            opt.zero_grad()
            loss_fn(net(xb), yb).backward()
            opt.step()
        with torch.no_grad():
            loss_fn(net(xt), yt).item()  # the per-epoch loss, as the engine reports it
    return time.perf_counter() - start


def c_reference(fast_math: bool, dtype: str) -> Callable[[Array, Array, int, int], float]:
    """benchmarks/c_reference.c built with gcc -O3 -march=native (optionally -ffast-math)."""
    src = Path(__file__).with_name("c_reference.c")
    lib = Path(tempfile.mkdtemp()) / "ref.so"
    flags = ["-ffast-math"] if fast_math else []
    real = ["-DREAL=double", "-DREAL_IS_DOUBLE"] if dtype == "float64" else ["-DREAL=float"]
    subprocess.run(
        ["gcc", "-O3", "-march=native", "-fPIC", "-shared", *flags, *real, "-o", str(lib), str(src), "-lm"], check=True
    )
    fn = ctypes.CDLL(str(lib)).train_epochs

    def run(x: Array, y: Array, batch: int, epochs: int) -> float:
        theta = np.array([0.5, -0.5, 0.1, -0.1, 0.3, -0.3, 0.0], dtype=dtype)
        rng = np.array([42], dtype=np.uint64)
        idx = np.arange(N, dtype=np.int32)
        xs, ys, losses = np.empty_like(x), np.empty_like(y), np.empty(epochs)
        ptr = [a.ctypes.data_as(ctypes.c_void_p) for a in (x, y, theta, rng, idx, xs, ys, losses)]
        start = time.perf_counter()
        fn(
            ptr[0],
            ptr[1],
            ctypes.c_int64(N),
            ptr[2],
            ctypes.c_int64(batch),
            ctypes.c_double(0.1),
            ctypes.c_int64(epochs),
            ptr[3],
            ptr[4],
            ptr[5],
            ptr[6],
            ptr[7],
        )
        return time.perf_counter() - start

    return run


def tinytrain(device: str, dtype: str) -> Callable[[Array, Array, int, int], float]:
    def run(x: Array, y: Array, batch: int, epochs: int) -> float:
        config = model.TrainConfig(batch_size=batch, epochs=epochs, dtype=dtype, device=device)  # type: ignore[arg-type]
        start = time.perf_counter()
        model.train(x, y, config)
        return time.perf_counter() - start

    return run


def rate(run: Callable[[Array, Array, int, int], float], x: Array, y: Array, batch: int, epochs: int) -> float:
    """Median samples per second over REPEATS timed calls of `epochs` epochs, after one warm-up."""
    run(x, y, batch, 1)
    return statistics.median(N * epochs / run(x, y, batch, epochs) for _ in range(REPEATS))


def first_call_seconds() -> tuple[float, float]:
    """Seconds of model.warm_up() in a fresh process: with an empty compile cache, then with it filled."""
    code = "import time, model; t = time.perf_counter(); model.warm_up(); print(time.perf_counter() - t)"
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        cold, warm = (
            float(
                subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True).stdout
            )
            for _ in range(2)
        )
    return cold, warm


def fmt(v: float) -> str:
    return f"{v / 1e6:.3g} M" if v >= 1e6 else f"{v / 1e3:.3g} k"


def main() -> None:
    torch.set_num_threads(1)
    print(f"# tinytrain engine benchmark: n = {N}, one thread, median of {REPEATS}")
    print(f"torch {torch.__version__}, numpy {np.__version__}, {os.cpu_count()} cores\n")
    for dtype in ("float32", "float64"):
        x, y = data(dtype)
        ours, c_o3, c_fm = tinytrain("cpu", dtype), c_reference(False, dtype), c_reference(True, dtype)
        with_torch = dtype == "float32"
        print(f"## CPU, {dtype} (samples/s)\n")
        head = "| B | " + ("typical PyTorch | " if with_torch else "") + "C -O3 | C -O3 -ffast-math | tinytrain |"
        head += " tinytrain / PyTorch |" if with_torch else ""
        print(head + " tinytrain / C -O3 | tinytrain / C fast-math |")
        print("|---:" * (head.count("|") - 1 + 2) + "|")
        for batch in BATCHES:
            r_ours, r_o3, r_fm = (rate(f, x, y, batch, 20) for f in (ours, c_o3, c_fm))
            row = f"| {batch} | "
            if with_torch:
                r_pt = (
                    N / typical_pytorch(x, y, batch, 1, "cpu")
                    if QUICK
                    else rate(lambda a, b, bs, e: typical_pytorch(a, b, bs, e, "cpu"), x, y, batch, 1)
                )
                row += f"{fmt(r_pt)} | "
            row += f"{fmt(r_o3)} | {fmt(r_fm)} | {fmt(r_ours)} |"
            row += f" {r_ours / r_pt:.0f}x |" if with_torch else ""
            print(row + f" {r_ours / r_o3:.2f}x | {r_ours / r_fm:.2f}x |", flush=True)
        print()
    cold, warm = first_call_seconds()
    print(
        f"First call (model.warm_up(), both dtypes): {cold:.2f} s compiling into an empty cache, "
        f"{warm:.2f} s loading from the cache (workers warm up before taking jobs).\n"
    )
    if torch.cuda.is_available():
        print(f"## CUDA ({torch.cuda.get_device_name()}), float32 (samples/s)\n")
        print("| B | typical PyTorch | tinytrain | ratio |\n|---:|---:|---:|---:|")
        x, y = data("float32")
        for batch in BATCHES:
            r_pt = rate(lambda a, b, bs, e: typical_pytorch(a, b, bs, e, "cuda"), x, y, batch, 1)
            r_ours = rate(tinytrain("cuda", "float32"), x, y, batch, 3)
            print(f"| {batch} | {fmt(r_pt)} | {fmt(r_ours)} | {r_ours / r_pt:.1f}x |", flush=True)
    else:
        print("No CUDA device here: no GPU rows.")


if __name__ == "__main__":
    main()
