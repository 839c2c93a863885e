"""The compiled analytic gradient against torch autograd, the slow obvious reference."""

import numpy as np
import numpy.typing as npt
import pytest
import torch
from hypothesis import example, given, note, settings
from hypothesis import strategies as st

from model import kernels

Array = npt.NDArray[np.float64]
TINY = 2.0**-900


def slope(z: torch.Tensor) -> torch.Tensor:
    """The sigmoid's derivative at z."""
    e = torch.exp(-z.abs())
    return e / (1 + e) ** 2


def autograd_gradient(x: Array, y: Array, theta: Array) -> tuple[Array, Array, Array]:
    """The batch-MSE gradient by autograd, and the error bound each component's sum allows.

    A sum whose terms cancel is only defined to rtol of the terms' size, not of its small
    result, so the bound is the summed magnitude of the per-point terms. And a sigmoid slope
    below the smallest normal float is only defined to that absolute size; x can amplify it."""
    xt, yt = torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.float64)

    def sigmoid(z: torch.Tensor) -> torch.Tensor:
        # torch.sigmoid flushes to 0 below z = -709 where the true value is still a (subnormal)
        # float; this form is exact there too, and autograd differentiates it.
        pos = z >= 0
        zp, zn = torch.where(pos, z, 0), torch.where(pos, 0, z)  # the branch not taken stays finite
        return torch.where(pos, 1 / (1 + torch.exp(-zp)), torch.exp(zn) / (1 + torch.exp(zn)))

    def point_losses(t: torch.Tensor) -> torch.Tensor:
        u1, u2 = sigmoid(t[0] * xt + t[2]), sigmoid(t[1] * xt + t[3])
        return (t[4] * u1 + t[5] * u2 + t[6] - yt) ** 2 / len(x)

    tt = torch.tensor(theta, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(point_losses, tt)  # type: ignore[no-untyped-call]  # [n, 7]
    with torch.no_grad():
        u1, u2 = sigmoid(tt[0] * xt + tt[2]), sigmoid(tt[1] * xt + tt[3])
        g = 2 / len(x) * (tt[4] * u1 + tt[5] * u2 + tt[6] - yt)
        reach = torch.stack(
            [
                (g * tt[4] * xt).abs().sum(),
                (g * tt[5] * xt).abs().sum(),
                (g * tt[4]).abs().sum(),
                (g * tt[5]).abs().sum(),
            ]
        )
        # The residual yhat - y is itself a sum that may cancel: it is only defined to a few ulps
        # of its terms' size, and any order of summing them (the engine's is another) is as right.
        size = 2 / len(x) * ((tt[4] * u1).abs() + (tt[5] * u2).abs() + tt[6].abs() + yt.abs())
        # The slopes in a form that keeps them where u (1 - u) rounds to 0 (u = 1 - 1e-17 is 1.0):
        # the engine computes them there, and a residual it rounds otherwise carries them on.
        s1, s2 = slope(tt[0] * xt + tt[2]), slope(tt[1] * xt + tt[3])
        dyhat = torch.stack([tt[4] * s1 * xt, tt[5] * s2 * xt, tt[4] * s1, tt[5] * s2, u1, u2, torch.ones_like(u1)])
        residual_rounding = 4 * torch.finfo(torch.float64).eps * (size * dyhat.abs()).sum(1)
    # Values far below anything a training step can move (2^-900, about 1e-271) count as zero,
    # also after x amplified them: there the sigmoid's slope and its products round through the
    # subnormal range, which the engine does not promise to follow ulp for ulp.
    floor = torch.full((7,), TINY, dtype=torch.float64) + residual_rounding
    floor[:4] += TINY * reach
    return jac.sum(0).numpy(), jac.abs().sum(0).numpy(), floor.numpy()


def engine_gradient(x: Array, y: Array, theta: Array, dtype: type = np.float64) -> Array:
    xs: Array = np.asarray(x, dtype)
    ys: Array = np.asarray(y, dtype)
    return np.array(kernels.batch_gradient(xs, ys, 0, len(xs), *theta.astype(dtype)), dtype=np.float64)


def assert_gradients_close(ours: Array, ref: tuple[Array, Array, Array], rtol: float) -> None:
    total, magnitude, floor = ref
    bound = rtol * magnitude + floor
    bad = np.abs(ours - total) > bound
    assert not bad.any(), f"components {np.flatnonzero(bad)}: ours {ours}, autograd {total}, bound {bound}"


@pytest.mark.parametrize("batch", [1, 2, 7, 32, 33, 1000])
def test_gradient_matches_autograd_on_random_batches(batch: int) -> None:
    rng = np.random.default_rng(batch)
    for _ in range(20):
        x, y = rng.normal(0, 3, batch), rng.normal(0, 1, batch)
        theta = rng.normal(0, 2, 7)
        assert_gradients_close(engine_gradient(x, y, theta), autograd_gradient(x, y, theta), 1e-10)


def test_float32_gradient_is_close_to_float64_reference() -> None:
    rng = np.random.default_rng(7)
    x, y, theta = rng.uniform(-3, 3, 256), rng.normal(0, 1, 256), rng.normal(0, 1, 7)
    assert_gradients_close(engine_gradient(x, y, theta, np.float32), autograd_gradient(x, y, theta), 1e-4)


finite = st.floats(allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None)
# Found by CI: b2 + w22 u2 - y is 0 summed one way and w22 u2 the other, with u2's slope 1e-17.
@example(x=[0.0], theta=[0.0, 0.0, 0.0, 37.0, 0.0, 2.218475900837141e-23, 37.0], y_scale=37.0)
@given(
    x=st.lists(st.floats(-1e30, 1e30), min_size=1, max_size=40),
    theta=st.lists(st.floats(-1e3, 1e3), min_size=7, max_size=7),
    y_scale=st.floats(0, 1e6),
)
def test_gradient_matches_autograd_with_extreme_values(x: list[float], theta: list[float], y_scale: float) -> None:
    xs = np.array(x)
    ys = np.cos(xs % 7) * y_scale
    th = np.array(theta)
    note(f"x={xs.tolist()!r} y={ys.tolist()!r} theta={th.tolist()!r}")  # printed with a failure
    ref = autograd_gradient(xs, ys, th)
    ours = engine_gradient(xs, ys, th)
    assert np.isfinite(ours).all() == np.isfinite(ref[0]).all()
    if np.isfinite(ref[0]).all():
        assert_gradients_close(ours, ref, 1e-10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_never_overflows(dtype: type) -> None:
    z: npt.NDArray[np.floating] = np.array([-1e30, -1e4, -745.0, -104.0, -20.0, 0.0, 20.0, 104.0, 1e30], dtype=dtype)
    x = np.ones_like(z)
    # batch_gradient at w11 = z, b11 = 0 on x = 1 evaluates sigmoid(z) without warnings or NaN.
    for value in z:
        g = kernels.batch_gradient(x[:1], x[:1], 0, 1, value, value, dtype(0), dtype(0), dtype(1), dtype(1), dtype(0))
        assert np.isfinite(g).all()
    torch_ref = torch.sigmoid(torch.tensor(z.astype(np.float64))).numpy()
    ours = np.array([kernels.mse(x[:1], np.zeros(1, dtype), np.array([v, 0, 0, 0, 1, 0, 0], dtype)) for v in z])
    tiny = float(np.finfo(dtype).smallest_subnormal)
    np.testing.assert_allclose(np.sqrt(ours), torch_ref, rtol=1e-6 if dtype is np.float32 else 1e-14, atol=tiny)
