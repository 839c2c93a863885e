"""Compiled CPU kernels: the whole mini-batch epoch loop in one numba function.

Why compiled: a step of this seven-parameter model is a few hundred flops, so any per-step
framework dispatch (tens of microseconds in torch eager) costs 100x the arithmetic. Here the
batch order (order.py), the gather, every step and the exact per-epoch loss of many trials
run in one call.

Why a hand-written exp: LLVM cannot vectorise a loop that calls libm's exp, and the two
sigmoids per sample are the bulk of the work. `_sigmoid` uses a range-reduced polynomial
(error about 1 ulp, like libm) that vectorises, and the stable form that never overflows.
Sums are allowed to be reassociated (so they vectorise); inf and NaN keep IEEE semantics so
divergence is seen.
"""

import math
from typing import Any

import numpy as np
from llvmlite import ir
from numba import literal_unroll, njit, types
from numba.extending import intrinsic, overload

from model import order

# Reorder sums so loops vectorise. No 'contract': w*x + b rounds as in plain IEEE code (and autograd),
# which matters where it cancels. No 'nnan'/'ninf': divergence must show.
# error_model="numpy" everywhere: a Python ZeroDivisionError check in the loop stops vectorising.
_FAST = {"reassoc", "nsz"}

# A trial's status, in state[k, STATUS].
RUNNING, COMPLETED, STOPPED_EARLY, DIVERGED = 0, 1, 2, 3

# A trial's state[k] slots, shared with the GPU kernel: epochs done, early-stopping memory, status.
EPOCH, BEST, WAIT, STATUS = 0, 1, 2, 3
STATE_SIZE = 4


@intrinsic
def _bits_as_float(typingctx, bits, like):
    """Reinterpret the low bits of an integer as a float of like's type (float32 or float64)."""
    target = like

    def codegen(context, builder, signature, args):
        float_t = context.get_value_type(target)
        int_t = ir.IntType(32 if target == types.float32 else 64)
        return builder.bitcast(builder.trunc(args[0], int_t) if bits.bitwidth > int_t.width else args[0], float_t)

    return target(bits, like), codegen


def _exp_constants(dtype: type) -> tuple[object, ...]:
    """Per-dtype constants of exp(r) = 2^k * e^f, f = r - k ln 2, |f| <= ln(2)/2."""
    # Integer work in the float's own width (int32 for float32) keeps the vector lanes full.
    int_t: type[np.signedinteger[Any]]
    if dtype is np.float32:
        # e^-104 is below the smallest float32 subnormal; degree 7 gives ~1 ulp.
        lo, ln2_hi, ln2_lo, int_t, mant, bias, degree = -104.0, 0.693359375, -2.12194440e-4, np.int32, 23, 127, 7
    else:
        lo, ln2_hi, ln2_lo = -746.0, 6.93147180369123816490e-01, 1.90821492927058770002e-10
        int_t, mant, bias, degree = np.int64, 52, 1023, 13
    coeffs = tuple(dtype(1.0 / math.factorial(i)) for i in range(degree, -1, -1))
    return (
        dtype(lo),
        dtype(1.0 / math.log(2.0)),
        dtype(ln2_hi),
        dtype(ln2_lo),
        coeffs,
        int_t(mant),
        int_t(bias),
        dtype(0.5),
        dtype(1.0),
    )


def sigmoid(z: float) -> tuple[float, float]:
    """sigmoid(z) = 1 / (1 + exp(-z)) and its slope sigmoid(z) * (1 - sigmoid(z)), for any z.

    With t = exp(-|z|) <= 1 nothing overflows, and 1 - sigmoid(z) is t/(1+t) or 1/(1+t) exactly,
    so the slope keeps full precision where sigmoid(z) rounds to 1. (Compiled version below.)"""
    t = math.exp(-abs(z))
    inv = 1.0 / (1.0 + t)
    return (inv if z >= 0 else t * inv), t * inv * inv


@overload(sigmoid, jit_options={"fastmath": False, "error_model": "numpy"})
def _sigmoid_impl(z):
    dtype = np.float32 if z == types.float32 else np.float64
    lo, log2e, ln2_hi, ln2_lo, coeffs, mant, bias, half, one = _exp_constants(dtype)
    first, rest = coeffs[0], coeffs[1:]
    int_t = type(bias)
    one_i = int_t(1)

    def impl(z):
        # exp(-|z|) only: it never overflows; NaN maps to the clamp and is caught by the caller.
        r = -abs(z)
        r = r if r > lo else lo
        k = np.floor(r * log2e + half)
        f = (r - k * ln2_hi) - k * ln2_lo
        p = first
        for c in literal_unroll(rest):  # Horner, unrolled at compile time
            p = p * f + c
        # 2^k as two normal factors, so results below the smallest normal underflow gradually.
        ki = int_t(k)
        k1 = ki >> one_i
        t = p * _bits_as_float((k1 + bias) << mant, r) * _bits_as_float((ki - k1 + bias) << mant, r)
        inv = one / (one + t)
        return (inv if z >= 0 else t * inv), t * inv * inv

    return impl


@njit(cache=True, fastmath=_FAST, error_model="numpy", nogil=True)
def batch_gradient(xs, ys, start, stop, w11, w12, b11, b12, w21, w22, b2):
    """Gradient of the mean squared error over xs[start:stop] (docs/model.md): 7 sums."""
    T = xs.dtype.type
    c = T(2) / T(stop - start)
    gw11 = gw12 = gb11 = gb12 = gw21 = gw22 = gb2 = T(0)
    for i in range(start, stop):
        x = xs[i]
        u1, s1 = sigmoid(w11 * x + b11)  # s = u * (1 - u), the sigmoid's slope
        u2, s2 = sigmoid(w12 * x + b12)
        g = c * (w21 * u1 + w22 * u2 + b2 - ys[i])  # dMSE/dyhat_i
        gw21 += g * u1
        gw22 += g * u2
        gb2 += g
        d1 = g * w21 * s1  # dMSE/dz_1i
        d2 = g * w22 * s2
        gw11 += d1 * x
        gw12 += d2 * x
        gb11 += d1
        gb12 += d2
    return gw11, gw12, gb11, gb12, gw21, gw22, gb2


@njit(cache=True, fastmath=_FAST, error_model="numpy", nogil=True)
def _sgd_steps(xs, ys, start, stop, batch_size, theta, lr):
    """Mini-batch steps over xs[start:stop] in batches of batch_size (the last may be short)."""
    w11, w12, b11, b12, w21, w22, b2 = theta[0], theta[1], theta[2], theta[3], theta[4], theta[5], theta[6]
    for s in range(start, stop, batch_size):
        e = min(s + batch_size, stop)
        g = batch_gradient(xs, ys, s, e, w11, w12, b11, b12, w21, w22, b2)
        w11 -= lr * g[0]
        w12 -= lr * g[1]
        b11 -= lr * g[2]
        b12 -= lr * g[3]
        w21 -= lr * g[4]
        w22 -= lr * g[5]
        b2 -= lr * g[6]
    theta[0], theta[1], theta[2], theta[3], theta[4], theta[5], theta[6] = w11, w12, b11, b12, w21, w22, b2


@njit(cache=True, fastmath=_FAST, error_model="numpy", nogil=True)
def mse(x, y, theta):
    """Mean squared error over all points, the squares summed in float64."""
    w11, w12, b11, b12, w21, w22, b2 = theta[0], theta[1], theta[2], theta[3], theta[4], theta[5], theta[6]
    total = 0.0
    for i in range(x.shape[0]):
        r = np.float64(w21 * sigmoid(w11 * x[i] + b11)[0] + w22 * sigmoid(w12 * x[i] + b12)[0] + b2 - y[i])
        total += r * r
    return total / x.shape[0]


@njit(cache=True, error_model="numpy", nogil=True)
def early_stopping_update(state, watched, patience, min_delta):
    """Record an epoch's watched loss in a trial's state; True when patience epochs passed without improvement."""
    if watched < state[BEST] - min_delta:
        state[BEST] = watched
        state[WAIT] = 0
    else:
        state[WAIT] += 1
    return patience > 0 and state[WAIT] >= patience


@njit(cache=True, error_model="numpy", nogil=True)
def _all_finite(theta):
    for v in theta:
        if not np.isfinite(v):
            return False
    return True


# nogil: the fleet's threads (and a Celery worker's) train side by side in this function.
@njit(cache=True, error_model="numpy", nogil=True)
def run_trials(
    trials,
    x,
    y,
    xv,
    yv,
    theta,
    last_good,
    state,
    losses,
    val_losses,
    lr,
    batch_size,
    epochs,
    shuffle,
    drop_last,
    patience,
    min_delta,
    order_seed,
    max_epochs,
):
    """Train each running trial k in trials for up to max_epochs more epochs.

    x, y: training points in their stored order; xv, yv: validation points (may be empty);
    per trial k: theta[k] [7] in and out, last_good[k] the parameters after its last finite
    epoch, state[k] (EPOCH, BEST, WAIT, STATUS), losses[k] / val_losses[k] filled per epoch,
    and its hyperparameters lr[k] ... order_seed[k]. A trial ends COMPLETED, STOPPED_EARLY or
    DIVERGED in state[k, STATUS]; one that is still RUNNING resumes at its next epoch."""
    xs = np.empty_like(x)  # the points in batch order, reused by every trial of this call
    ys = np.empty_like(y)
    keys = np.empty(2 * order.ROUNDS, dtype=np.uint64)
    n = x.shape[0]
    bits = order.domain_bits(n)
    for k in trials:
        # One trial: up to max_epochs whole epochs, until it completes, stops early or diverges.
        t, s = theta[k], state[k]
        stop = n - n % batch_size[k] if drop_last[k] else n
        rate = x.dtype.type(lr[k])
        last = s[EPOCH] + max_epochs
        while s[STATUS] == RUNNING and s[EPOCH] < last:
            epoch = int(s[EPOCH])
            if shuffle[k]:
                order.epoch_keys(order_seed[k], epoch, keys)
                for i in range(stop):  # the dropped tail is never read
                    j = order.position(i, n, bits, keys)
                    xs[i] = x[j]
                    ys[i] = y[j]
                _sgd_steps(xs, ys, 0, stop, batch_size[k], t, rate)
            else:
                _sgd_steps(x, y, 0, stop, batch_size[k], t, rate)
            loss = mse(x, y, t)
            val_loss = mse(xv, yv, t) if xv.shape[0] > 0 else 0.0
            if not (np.isfinite(loss) and np.isfinite(val_loss) and _all_finite(t)):
                t[:] = last_good[k]
                s[STATUS] = DIVERGED
                break
            last_good[k] = t
            losses[k, epoch] = loss
            val_losses[k, epoch] = val_loss
            s[EPOCH] = epoch + 1
            if early_stopping_update(s, val_loss if xv.shape[0] > 0 else loss, patience[k], min_delta[k]):
                s[STATUS] = STOPPED_EARLY
            elif epoch + 1 >= epochs[k]:
                s[STATUS] = COMPLETED
