"""Compiled CPU kernels: the whole mini-batch epoch loop in one numba function.

Why compiled: a step of this seven-parameter model is a few hundred flops, so any per-step
framework dispatch (tens of microseconds in torch eager) costs 100x the arithmetic. Here the
shuffle, the gather, every step and the exact per-epoch loss run in one call.

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

# Reorder sums so loops vectorise. No 'contract': w*x + b rounds as in plain IEEE code (and autograd),
# which matters where it cancels. No 'nnan'/'ninf': divergence must show.
# error_model="numpy" everywhere: a Python ZeroDivisionError check in the loop stops vectorising.
_FAST = {"reassoc", "nsz"}

# Status codes returned by run_epochs.
RUNNING, COMPLETED, STOPPED_EARLY, DIVERGED = 0, 1, 2, 3

# state[] slots shared with the torch engine: where the run is and the early-stopping memory.
EPOCH, OFFSET, BEST, WAIT = 0, 1, 2, 3
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


@njit(cache=True, fastmath=_FAST, error_model="numpy")
def batch_gradient(xs, ys, start, stop, w11, w12, b11, b12, w21, w22, b2):
    """Gradient of the mean squared error over xs[start:stop] (model.md): 7 sums."""
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


@njit(cache=True, fastmath=_FAST, error_model="numpy")
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


_LOW32 = np.uint64(0xFFFFFFFF)


@njit(cache=True, error_model="numpy")
def _splitmix64(rng):
    rng[0] += np.uint64(0x9E3779B97F4A7C15)
    z = rng[0]
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(cache=True, error_model="numpy")
def _below(word, bound, rng):
    """A uniform integer in [0, bound) from a uniform 32-bit word (Lemire's method, unbiased)."""
    m = word * bound
    if (m & _LOW32) < bound:
        threshold = (np.uint64(1 << 32) - bound) % bound
        while (m & _LOW32) < threshold:
            m = (_splitmix64(rng) >> np.uint64(32)) * bound
    return m >> np.uint64(32)


@njit(cache=True, error_model="numpy")
def shuffle(xs, ys, rng):
    """Fisher-Yates shuffle of the pairs (xs[i], ys[i]) in place; rng: [1] uint64 splitmix64 state.

    Permuting the data itself saves a gather pass; each 64-bit draw gives two 32-bit ones
    (so len(xs) < 2**32)."""
    i = xs.shape[0] - 1
    while i > 0:
        word = _splitmix64(rng)
        for half in (word >> np.uint64(32), word & _LOW32):
            if i > 0:
                j = _below(half, np.uint64(i + 1), rng)
                xs[i], xs[j] = xs[j], xs[i]
                ys[i], ys[j] = ys[j], ys[i]
                i -= 1


@njit(cache=True, error_model="numpy")
def early_stopping_update(state, watched, patience, min_delta):
    """Record an epoch's watched loss; True when patience epochs passed without improvement."""
    if watched < state[BEST] - min_delta:
        state[BEST] = watched
        state[WAIT] = 0
    else:
        state[WAIT] += 1
    return patience > 0 and state[WAIT] >= patience


@njit(cache=True, error_model="numpy")
def _all_finite(theta):
    for v in theta:
        if not np.isfinite(v):
            return False
    return True


# nogil: runs in worker threads train side by side (the Celery worker's thread pool).
@njit(cache=True, error_model="numpy", nogil=True)
def run_epochs(
    x,
    y,
    xv,
    yv,
    xs,
    ys,
    rng,
    theta,
    last_good,
    state,
    losses,
    val_losses,
    batch_size,
    lr,
    shuffle_each_epoch,
    drop_last,
    epochs,
    patience,
    min_delta,
    sample_budget,
):
    """Train until `epochs` are done, early stopping, divergence or about sample_budget samples.

    x, y: training points in their stored order (the loss is taken over them);
    xs, ys: the points in batch order: a copy reshuffled in place each epoch (x, y themselves
    when not shuffling);
    xv, yv: validation points (may be empty); theta: [7] in and out; last_good: [7], the
    parameters after the last finite epoch; losses/val_losses: [epochs] float64, filled per epoch.
    Resumable: state[EPOCH], state[OFFSET] say where the next call starts (mid-epoch too).
    Returns one of RUNNING, COMPLETED, STOPPED_EARLY, DIVERGED.
    """
    n = x.shape[0]
    stop = n - n % batch_size if drop_last else n
    lr = x.dtype.type(lr)
    done = 0
    while int(state[EPOCH]) < epochs:
        offset = int(state[OFFSET])
        if offset == 0 and shuffle_each_epoch:
            shuffle(xs, ys, rng)
        # Whole batches until the budget is spent; at least one, so every call progresses.
        batches = max(1, (sample_budget - done) // batch_size)
        end = min(stop, offset + batches * batch_size)
        _sgd_steps(xs, ys, offset, end, batch_size, theta, lr)
        done += end - offset
        if end < stop:
            state[OFFSET] = end
            return RUNNING
        epoch = int(state[EPOCH])
        loss = mse(x, y, theta)
        val_loss = mse(xv, yv, theta) if xv.shape[0] > 0 else 0.0
        if not (np.isfinite(loss) and np.isfinite(val_loss) and _all_finite(theta)):
            theta[:] = last_good
            return DIVERGED
        last_good[:] = theta
        losses[epoch] = loss
        val_losses[epoch] = val_loss
        state[EPOCH] = epoch + 1
        state[OFFSET] = 0
        done += n + xv.shape[0]
        if early_stopping_update(state, val_loss if xv.shape[0] > 0 else loss, patience, min_delta):
            return STOPPED_EARLY
        if done >= sample_budget:
            break
    return COMPLETED if int(state[EPOCH]) >= epochs else RUNNING
