"""The GPU engine (model/gpu.py) gives every trial of a fleet the CPU engine's results.

Without a GPU the kernel runs in Triton's interpreter, on CPU tensors: the module fixture
loads a second copy of model/gpu.py under another name with TRITON_INTERPRET=1 set only
while it is imported (Triton decides at decoration time), so model.gpu itself, and the
real-GPU test at the end, stay compiled. The interpreter is slow (milliseconds a step), so
these fleets are small: tens of points, a few trials, a few epochs.
"""

import importlib.util
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import torch

from model import EarlyStopping, TrainConfig, train_fleet
from model.config import Dtype
from model.fleet import Fleet
from model.kernels import BEST, COMPLETED, DIVERGED, EPOCH, STATUS, STOPPED_EARLY, WAIT
from model.training import CpuEngine

pytest.importorskip("triton")

GPU_SOURCE = Path(__file__).resolve().parents[2] / "model" / "gpu.py"
# (rtol, atol) of parameters, rtol of losses. float64: the same operations summed in another order;
# float32: also float32's rounding of them (and on a GPU its fast exp and division).
TOLERANCE = {"float64": (1e-9, 1e-12), "float32": (1e-4, 1e-6)}
DTYPES: list[Dtype] = ["float64", "float32"]
HUGE_OUTPUT = {"w11": 0.0, "w12": 0.0, "b11": 0.0, "b12": 0.0, "w21": 1e300, "w22": 1e300, "b2": 0.0}


@pytest.fixture(scope="module")
def gpu() -> Iterator[ModuleType]:
    """model/gpu.py with its kernel in Triton's interpreter (GpuEngine(fleet, device="cpu"))."""
    saved = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        spec = importlib.util.spec_from_file_location("tests_model_gpu_interpreted", GPU_SOURCE)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        if saved is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = saved
    yield module


def points(n: int, scale: float = 3.0, seed: int = 0) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-scale, scale, n)
    return x, np.sin(x) + 0.1 * rng.standard_normal(n)


def assert_same_trials(cpu: Fleet, gpu: Fleet) -> None:
    """Every trial: the same epochs done and status, its parameters and histories within rounding."""
    np.testing.assert_array_equal(gpu.state[:, EPOCH], cpu.state[:, EPOCH])
    np.testing.assert_array_equal(gpu.state[:, STATUS], cpu.state[:, STATUS])
    np.testing.assert_array_equal(gpu.state[:, WAIT], cpu.state[:, WAIT])
    rtol, atol = TOLERANCE[cpu.dtype]
    np.testing.assert_allclose(gpu.state[:, BEST], cpu.state[:, BEST], rtol=rtol)
    np.testing.assert_allclose(gpu.theta, cpu.theta, rtol=rtol, atol=atol)
    np.testing.assert_allclose(gpu.last_good, cpu.last_good, rtol=rtol, atol=atol)
    np.testing.assert_allclose(gpu.losses, cpu.losses, rtol=rtol)
    np.testing.assert_allclose(gpu.val_losses, cpu.val_losses, rtol=rtol)


def run_both(
    gpu: ModuleType, x: Any, y: Any, configs: Sequence[TrainConfig], calls: Sequence[int] = (2, 3, 100)
) -> tuple[Fleet, Fleet]:
    """The fleet trained by the CPU engine and, on an identical fleet, by the GPU engine, call by call."""
    cpu_fleet, gpu_fleet = Fleet(x, y, configs), Fleet(x, y, configs)
    cpu_engine, gpu_engine = CpuEngine(cpu_fleet), gpu.GpuEngine(gpu_fleet, device="cpu")
    assert gpu_engine.device_name == "cpu"
    for epochs in calls:  # several calls: each resumes where the last one stopped
        cpu_engine.run(epochs)
        gpu_engine.run(epochs)
        assert_same_trials(cpu_fleet, gpu_fleet)
    assert gpu_fleet.running().size == 0
    return cpu_fleet, gpu_fleet


@pytest.mark.parametrize("dtype", DTYPES)
def test_mixed_fleet_equals_the_cpu_engine(gpu: ModuleType, dtype: Dtype) -> None:
    x, y = points(45)  # not a power of two: the batch order walks cycles
    common: dict[str, Any] = {"dtype": dtype, "device": "cpu"}
    configs = [
        TrainConfig(learning_rate=0.3, batch_size=8, epochs=5, seed=1, **common),  # 45 = 5 * 8 + 5
        TrainConfig(learning_rate=0.1, batch_size=45, epochs=4, seed=2, shuffle=False, **common),
        TrainConfig(learning_rate=0.2, batch_size=7, epochs=6, seed=3, drop_last=True, **common),
        TrainConfig(
            learning_rate=0.5, batch_size=16, epochs=6, seed=4, early_stopping=EarlyStopping(2, 10.0), **common
        ),
        TrainConfig(learning_rate=0.05, batch_size=33, epochs=3, seed=5, **common),  # a 64-lane block
    ]
    cpu, _ = run_both(gpu, x, y, configs)
    assert list(cpu.state[:, STATUS]) == [COMPLETED, COMPLETED, COMPLETED, STOPPED_EARLY, COMPLETED]
    assert list(cpu.state[:, EPOCH]) == [5, 4, 6, 3, 3]


@pytest.mark.parametrize("dtype", DTYPES)
def test_validation_split_fleet_equals_the_cpu_engine(gpu: ModuleType, dtype: Dtype) -> None:
    x, y = points(80)  # 64 training points (a power of two: no cycle walking), 16 held out
    common: dict[str, Any] = {"dtype": dtype, "device": "cpu", "validation_fraction": 0.2}
    configs = [
        TrainConfig(learning_rate=0.4, batch_size=16, epochs=4, seed=6, **common),
        TrainConfig(learning_rate=0.2, batch_size=10, epochs=4, seed=7, drop_last=True, **common),
        TrainConfig(
            learning_rate=0.5, batch_size=32, epochs=8, seed=8, early_stopping=EarlyStopping(2, 0.08), **common
        ),
    ]
    cpu, _ = run_both(gpu, x, y, configs, calls=(1, 100))
    assert cpu.xv.shape[0] == 16 and np.all(cpu.val_losses[:, :4] > 0)
    assert list(cpu.state[:, STATUS]) == [COMPLETED, COMPLETED, STOPPED_EARLY] and cpu.state[2, EPOCH] == 6


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("dtype", DTYPES)
def test_diverging_trials_keep_their_last_good_epoch(gpu: ModuleType, dtype: Dtype) -> None:
    x, y = points(40, scale=50.0)
    common: dict[str, Any] = {"dtype": dtype, "device": "cpu"}
    configs = [
        TrainConfig(learning_rate=1e6, batch_size=4, epochs=5, seed=9, **common),
        TrainConfig(learning_rate=1e-4, batch_size=20, epochs=3, seed=10, **common),
        TrainConfig(batch_size=20, epochs=3, initial_parameters=HUGE_OUTPUT, **common),  # an infinite initial loss
    ]
    cpu, gpu_fleet = run_both(gpu, x, y, configs, calls=(2, 100))
    assert list(cpu.state[:, STATUS]) == [DIVERGED, COMPLETED, DIVERGED]
    assert cpu.state[2, EPOCH] == 0 and not math.isfinite(cpu.initial_loss[2])  # never ran
    np.testing.assert_array_equal(gpu_fleet.theta, gpu_fleet.last_good)


def test_a_batch_larger_than_the_block_is_summed_in_chunks(gpu: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpu, "_MAX_BLOCK", 32)  # so batches of 40 and 45 points take two chunks
    x, y = points(45)
    common: dict[str, Any] = {"dtype": "float64", "device": "cpu", "epochs": 3}
    configs = [
        TrainConfig(learning_rate=0.3, batch_size=40, seed=11, **common),
        TrainConfig(learning_rate=0.3, batch_size=45, seed=12, **common),
        TrainConfig(learning_rate=0.3, batch_size=20, seed=13, **common),
    ]
    run_both(gpu, x, y, configs)


@pytest.mark.skipif(bool(os.environ.get("TRITON_INTERPRET")), reason="model.gpu itself is interpreted")
def test_device_cpu_needs_the_interpreter() -> None:
    from model.gpu import GpuEngine

    fleet = Fleet([0.0, 1.0], [0.0, 1.0], [TrainConfig(batch_size=1, device="cpu")])
    with pytest.raises(ValueError, match="TRITON_INTERPRET"):
        GpuEngine(fleet, device="cpu")


# The kernel's argument types as a launch from GpuEngine gives them (ints: i32).
_POINTERS = {"xy_ptr": "*{f}", "xyv_ptr": "*{f}", "theta_ptr": "*{f}", "last_good_ptr": "*{f}", "seed_ptr": "*i64"}
_POINTERS |= dict.fromkeys(("state_ptr", "losses_ptr", "val_losses_ptr", "lr_ptr", "min_delta_ptr"), "*fp64")


@pytest.mark.skipif(bool(os.environ.get("TRITON_INTERPRET")), reason="model.gpu itself is interpreted")
@pytest.mark.parametrize(
    ("dtype", "constexprs"),
    [
        ("fp32", {"BLOCK": 32, "CHUNKED": False, "EVAL_BLOCK": 128, "HAS_VAL": True, "WALK": True, "FAST": True}),
        ("fp64", {"BLOCK": 1024, "CHUNKED": True, "EVAL_BLOCK": 1024, "HAS_VAL": False, "WALK": False, "FAST": False}),
    ],
)
def test_the_kernel_compiles_for_an_h100(
    dtype: str, constexprs: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the interpreter does not check (types, lowering, PTX): compiled ahead of time for sm_90, no GPU needed."""
    from triton import compile as triton_compile
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from model import gpu as compiled

    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path))
    signature = {}
    for name in compiled._fleet_kernel.arg_names:
        kind = "constexpr" if name in constexprs else "*i32" if name.endswith("_ptr") else "i32"
        signature[name] = _POINTERS.get(name, kind).format(f=dtype)
    source = ASTSource(compiled._fleet_kernel, signature, constexprs)
    options = {"num_warps": 8 if constexprs["BLOCK"] == 1024 else 1, "enable_fp_fusion": compiled._FP_FUSION}
    ptx = triton_compile(source, target=GPUTarget("cuda", 90, 32), options=options).asm["ptx"]
    ty = dtype.replace("fp", "f")
    assert f"mul.rn.{ty}" in ptx and f"add.rn.{ty}" in ptx  # not contracted into FMAs: each product rounds
    if dtype == "fp32":  # (float64's exp comes from libdevice, FMAs and all)
        assert "fma.rn.f32" not in ptx
    assert ("ex2.approx.ftz.f32" in ptx) == constexprs["FAST"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_sweep_equals_the_cpu_sweep(dtype: Dtype) -> None:
    x, y = points(1000)
    sweep: list[dict[str, Any]] = [
        {"learning_rate": 0.1, "batch_size": 32, "seed": 1},
        {"learning_rate": 0.3, "batch_size": 100, "seed": 2, "drop_last": True},
        {"learning_rate": 0.05, "batch_size": 1000, "seed": 3, "shuffle": False},
        {"learning_rate": 0.2, "batch_size": 7, "seed": 4, "early_stopping": EarlyStopping(2, 1e-3)},
        {"learning_rate": 1e6, "batch_size": 16, "seed": 5},
    ]
    results = {}
    for device in ("cpu", "cuda"):
        configs = [TrainConfig(epochs=20, validation_fraction=0.1, dtype=dtype, device=device, **s) for s in sweep]
        results[device] = train_fleet(x, y, configs)
    # float32 on a GPU: its exp and division are within 2 ulp, not correctly rounded; 20 epochs.
    rtol, atol = {"float64": (1e-9, 1e-12), "float32": (1e-3, 1e-5)}[dtype]
    for cpu, cuda in zip(results["cpu"], results["cuda"], strict=True):
        assert cuda.device.startswith("cuda:") and cpu.device == "cpu"
        assert cuda.epochs_completed == cpu.epochs_completed
        assert (cuda.stopped_early, cuda.diverged) == (cpu.stopped_early, cpu.diverged)
        params, cpu_params = list(cuda.parameters.values()), list(cpu.parameters.values())
        np.testing.assert_allclose(params, cpu_params, rtol=rtol, atol=atol)
        np.testing.assert_allclose(cuda.loss_history, cpu.loss_history, rtol=rtol)
        assert cpu.validation_loss_history is not None and cuda.validation_loss_history is not None
        np.testing.assert_allclose(cuda.validation_loss_history, cpu.validation_loss_history, rtol=rtol)
