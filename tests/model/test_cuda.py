"""The CUDA engine: run on CUDA where there is a GPU; its code also runs on CPU tensors everywhere."""

import numpy as np
import pytest
import torch

from model import TrainConfig, TrainingInputError, train
from model.cuda import CudaEngine
from model.training import prepare
from tests.model.test_training import INIT, sine
from tests.reference import NAMES, plain_train

has_cuda = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not has_cuda, reason="no CUDA device on this machine")

CONFIGS = [
    TrainConfig(epochs=4, batch_size=32, dtype="float64", validation_fraction=0.2),
    TrainConfig(epochs=3, batch_size=50, dtype="float32", drop_last=True),
    TrainConfig(epochs=30, batch_size=10, dtype="float64", shuffle=False, initial_parameters=INIT),
]


def run_torch_engine(x: np.ndarray, y: np.ndarray, config: TrainConfig, device: str):  # type: ignore[no-untyped-def]
    run = prepare(x, y, config)
    engine = CudaEngine(run, device)
    return run.drive(engine.run_epochs, engine.device_name, None, None)


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=needs_cuda)])
def test_torch_engine_matches_the_cpu_engine(config: TrainConfig, device: str) -> None:
    x, y = sine(333)
    cpu = train(x, y, config.__class__(**{**config.__dict__, "device": "cpu"}))
    other = run_torch_engine(x, y, config, device)
    tol = 1e-10 if config.dtype == "float64" else 1e-4
    assert other.epochs_completed == cpu.epochs_completed
    for k in NAMES:
        assert other.parameters[k] == pytest.approx(cpu.parameters[k], abs=tol)
    np.testing.assert_allclose(other.loss_history, cpu.loss_history, rtol=tol)


@needs_cuda
def test_cuda_run_matches_the_plain_loop() -> None:
    x, y = sine(203)
    result = train(x, y, TrainConfig(learning_rate=0.3, batch_size=32, epochs=5, shuffle=False,
                                     initial_parameters=INIT, dtype="float64", device="cuda"))  # fmt: skip
    params, _ = plain_train(list(x), list(y), INIT, 0.3, 32, 5)
    assert result.device.startswith("cuda")
    for k in NAMES:
        assert result.parameters[k] == pytest.approx(params[k], rel=1e-10, abs=1e-12)


@needs_cuda
def test_cuda_divergence_keeps_finite_parameters() -> None:
    x, y = sine(200)
    result = train(x, y * 1e3, TrainConfig(learning_rate=1e6, epochs=50, device="cuda"))
    assert result.diverged and all(np.isfinite(list(result.parameters.values())))


@pytest.mark.skipif(has_cuda, reason="this machine has a CUDA device")
def test_cuda_requested_without_a_gpu_is_a_clear_error() -> None:
    with pytest.raises(TrainingInputError, match="no CUDA device"):
        train([0.0, 1.0], [0.0, 1.0], TrainConfig(batch_size=1, device="cuda"))
