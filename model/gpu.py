"""The GPU engine: one Triton kernel trains many trials of a fleet, whole epochs per launch.

Design, and why:

- One program per trial. A trial's seven parameters live in registers for the whole launch;
  its mini-batch is a block of lanes (`tl.arange(0, BLOCK)`), one point per lane, and a step's
  seven gradient sums are block reductions. A step of this model is a few hundred flops, so
  anything that leaves the kernel between steps (a launch, a host round trip) would cost
  more than the step: the epoch loop, the batch loop, the batch order, the exact per-epoch
  loss, the divergence check and early stopping all run inside the kernel, and a launch
  advances every trial by up to `epochs` whole epochs. Trials are independent, so thousands
  of programs keep the GPU busy with no synchronisation between them.
- The batch order is computed, not stored: each lane finds the point at its position of the
  epoch with order.py's keyed bijection and cycle walking (the same integers: the per-epoch
  keys by splitmix64 in uint64, the rounds in uint32, whose wrap-around mod 2**32 then & mask
  equals the CPU's mod 2**bits since bits <= 32). No permutation is written to memory, and
  every device gets the same batches from a trial's seed.
- x and y are stored interleaved ([n, 2]), so the random gather of a point is one 8- or
  16-byte load; the dataset is shared by all trials and stays in L1/L2.
- The arithmetic is kernels.py's, operation for operation: the overflow-free sigmoid
  (t = exp(-|z|)), g = (2/m) * residual with m the batch's own size (2/m correctly rounded),
  theta -= lr * gradient in the fleet's dtype, and the per-epoch MSE over all training (and
  validation) points with the squares summed in float64. Contraction into FMAs is turned off
  (as in the CPU engine) so every product rounds as in plain IEEE code. Sums are reduced in
  another order than on the CPU (whose own vectorised sums are reordered too), and float32's
  exp and reciprocal on a GPU are the hardware's approximations (about 2 ulp, single
  instructions: FAST), so the results agree within rounding, not bit for bit.
- Everything after an epoch is branch-free selects on scalars (divergence: back to the last
  good parameters; early stopping's best / wait; the status), and the epoch loop is a
  `while` on (epochs run < this launch's, status == RUNNING), so a finished trial's program
  simply ends.
- Trials are launched in groups of like batch size: BLOCK (a power of two, 32..1024) is a
  compile-time constant per group, so a batch of 32 does not pay for a block of 1024. A batch
  larger than 1024 is processed in BLOCK-sized chunks whose gradient sums accumulate.
- Per-trial state (theta, last good theta, epoch / best / wait / status, the loss histories)
  stays on the device between calls; run() copies back only the rows of the trials it ran
  and only the loss columns of the epochs it could have written.

Under TRITON_INTERPRET=1 (set before this module is imported) the same kernel runs in
Triton's interpreter on CPU tensors: GpuEngine(fleet, device="cpu"), which is how the tests
check it against the CPU engine on machines without a GPU (FAST, PTX only, is then off).
"""

from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import triton
import triton.language as tl
from triton.runtime.interpreter import InterpretedFunction

from model import kernels, order
from model.fleet import Fleet

_MIN_BLOCK = 32  # one warp: a smaller block costs the same instructions
_MAX_BLOCK = 1024  # larger batches are processed in chunks of this many points
_MAX_INT32 = 2**31 - 1
# Off: w * x + b rounds twice, as in the CPU engine (and autograd); see kernels._FAST.
_FP_FUSION = False
# float32 on a GPU: _sigmoid's exp and reciprocal as single instructions (a third fewer in the loss pass).
_FAST_SIGMOID = True

# kernels.py's state slots and statuses, as compile-time constants of the kernel.
_EPOCH = tl.constexpr(kernels.EPOCH)
_BEST = tl.constexpr(kernels.BEST)
_WAIT = tl.constexpr(kernels.WAIT)
_STATUS = tl.constexpr(kernels.STATUS)
_STATE_SIZE = tl.constexpr(kernels.STATE_SIZE)
_RUNNING = tl.constexpr(kernels.RUNNING)
_COMPLETED = tl.constexpr(kernels.COMPLETED)
_STOPPED_EARLY = tl.constexpr(kernels.STOPPED_EARLY)
_DIVERGED = tl.constexpr(kernels.DIVERGED)


@triton.jit
def _sigmoid(z, FAST: tl.constexpr):
    """sigmoid(z) and its slope, as kernels.sigmoid: t = exp(-|z|) <= 1 never overflows.

    FAST (float32 on a GPU): the hardware's ex2 and reciprocal (about 2 ulp, like tl.exp and '/'
    there) without their fix-ups for subnormal and huge operands, which 1 + t in [1, 2] never
    needs; t below float32's smallest normal becomes 0, where its share of u and the slope is nil."""
    if FAST:
        t = tl.inline_asm_elementwise(
            "ex2.approx.ftz.f32 $0, $1;", "=f,f", [tl.abs(z) * -1.4426950408889634], tl.float32, True, 1
        )
        inv = tl.inline_asm_elementwise("rcp.approx.ftz.f32 $0, $1;", "=f,f", [1.0 + t], tl.float32, True, 1)
    else:
        t = tl.exp(-tl.abs(z))
        inv = 1.0 / (1.0 + t)
    return tl.where(z >= 0, inv, t * inv), t * inv * inv


# The kernel calls Triton's builtins, none of triton.language's own @jit helpers (tl.sum, tl.max,
# tl.zeros, tl.cdiv): those stay compiled when triton was imported before TRITON_INTERPRET was
# set, and an interpreted kernel cannot call them (the tests load an interpreted copy this way).
# tl.sum's combine function is only passed, never called, by the interpreter (it sums in numpy).
_SUM_COMBINE = tl.standard._sum_combine


@triton.jit
def _total(v):
    """The sum of a block's lanes: tl.sum's reduction."""
    return tl.reduce(v, 0, _SUM_COMBINE)


@triton.jit
def _load7(ptr):
    return (
        tl.load(ptr),
        tl.load(ptr + 1),
        tl.load(ptr + 2),
        tl.load(ptr + 3),
        tl.load(ptr + 4),
        tl.load(ptr + 5),
        tl.load(ptr + 6),
    )


@triton.jit
def _store7(ptr, values):
    for i in tl.static_range(7):
        tl.store(ptr + i, values[i])


@triton.jit
def _finite(v):
    return tl.abs(v) < float("inf")  # False for inf and NaN


@triton.jit
def _exact_div(a, b):
    """a / b correctly rounded (the GPU's float32 '/' is an approximation; float64's is exact)."""
    if a.dtype == tl.float32:
        return tl.math.div_rn(a, b)
    else:
        return a / b


@triton.jit
def _splitmix64(z):
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
    z = (z ^ (z >> 27)) * 0x94D049BB133111EB
    return z ^ (z >> 31)


@triton.jit
def _round_key(seed, epoch, r: tl.constexpr):
    """(a_r, c_r) of order.epoch_keys as uint32: splitmix64(seed + (4 * epoch + r + 1) * GOLDEN)."""
    z = _splitmix64(seed + (epoch * 4 + (r + 1)).to(tl.uint64) * 0x9E3779B97F4A7C15)
    return ((z >> 32) | 1).to(tl.uint32), (z & 0xFFFFFFFF).to(tl.uint32)


@triton.jit
def _epoch_keys(seed, epoch):
    """order.epoch_keys: (a_0, c_0, ..., a_3, c_3) of this epoch."""
    a0, c0 = _round_key(seed, epoch, 0)
    a1, c1 = _round_key(seed, epoch, 1)
    a2, c2 = _round_key(seed, epoch, 2)
    a3, c3 = _round_key(seed, epoch, 3)
    return a0, c0, a1, c1, a2, c2, a3, c3


@triton.jit
def _rounds(p, shift, mask, keys):
    """The four rounds of order.position on uint32 p in [0, 2**bits)."""
    a0, c0, a1, c1, a2, c2, a3, c3 = keys
    p = ((p ^ (p >> shift)) * a0 + c0) & mask
    p = ((p ^ (p >> shift)) * a1 + c1) & mask
    p = ((p ^ (p >> shift)) * a2 + c2) & mask
    return ((p ^ (p >> shift)) * a3 + c3) & mask


@triton.jit
def _batch_terms(xy_ptr, pos, valid, c, shuffle, n_u, shift, mask, keys, theta, WALK: tl.constexpr, FAST: tl.constexpr):
    """Per-lane terms of kernels.batch_gradient's seven sums, for the points at epoch positions pos.

    Lanes that are not valid give zero terms (g = 0); they start the order's walk at 0 < n so it ends."""
    w11, w12, b11, b12, w21, w22, b2 = theta
    p = _rounds(tl.where(valid, pos, 0).to(tl.uint32), shift, mask, keys)
    if WALK:  # n is not a power of two: cycle-walk until every lane is inside [0, n)
        while _total((p >= n_u).to(tl.int32)) > 0:
            p = tl.where(p >= n_u, _rounds(p, shift, mask, keys), p)
    j = tl.where(shuffle != 0, p.to(tl.int32), pos)
    xy = tl.load(xy_ptr + j[:, None] * 2 + tl.arange(0, 2)[None, :], mask=valid[:, None], other=0.0)
    x, y = tl.split(xy)
    u1, s1 = _sigmoid(w11 * x + b11, FAST)  # s = u * (1 - u), the sigmoid's slope
    u2, s2 = _sigmoid(w12 * x + b12, FAST)
    g = tl.where(valid, c * (w21 * u1 + w22 * u2 + b2 - y), 0.0)  # dMSE/dyhat_i
    d1 = g * w21 * s1  # dMSE/dz_1i
    d2 = g * w22 * s2
    return d1 * x, d2 * x, d1, d2, g * u1, g * u2, g


@triton.jit
def _mse(xy_ptr, count, theta, EVAL_BLOCK: tl.constexpr, FAST: tl.constexpr):
    """kernels.mse over the count points at xy_ptr: residuals in the fleet dtype, squares summed in float64."""
    w11, w12, b11, b12, w21, w22, b2 = theta
    lanes = tl.arange(0, EVAL_BLOCK)
    acc = tl.full([EVAL_BLOCK], 0.0, tl.float64)
    for off in range(0, count, EVAL_BLOCK):
        idx = off + lanes
        valid = idx < count
        xy = tl.load(xy_ptr + idx[:, None] * 2 + tl.arange(0, 2)[None, :], mask=valid[:, None], other=0.0)
        x, y = tl.split(xy)
        u1, _ = _sigmoid(w11 * x + b11, FAST)
        u2, _ = _sigmoid(w12 * x + b12, FAST)
        r = (w21 * u1 + w22 * u2 + b2 - y).to(tl.float64)
        acc += tl.where(valid, r * r, 0.0)
    return _total(acc) / count


@triton.jit(do_not_specialize=["n", "nv", "e_max", "max_epochs", "mask", "shift"])
def _fleet_kernel(
    trials_ptr,  # [G] int32: the fleet rows this launch trains, one program each
    xy_ptr,  # [n, 2] training points, x and y interleaved, in the fleet's dtype
    n,
    xyv_ptr,  # [nv, 2] validation points (one dummy row when there are none)
    nv,
    theta_ptr,  # [K, 7] in and out
    last_good_ptr,  # [K, 7] the parameters after each trial's last finite epoch
    state_ptr,  # [K, 4] float64: EPOCH, BEST, WAIT, STATUS (kernels.py)
    losses_ptr,  # [K, e_max] float64
    val_losses_ptr,  # [K, e_max] float64
    e_max,
    lr_ptr,  # [K] float64
    batch_ptr,  # [K] int32 ...
    epochs_ptr,
    shuffle_ptr,
    drop_last_ptr,
    patience_ptr,
    min_delta_ptr,  # [K] float64
    seed_ptr,  # [K] int64: the order seed's bits
    max_epochs,  # run at most this many epochs of each trial
    mask,  # 2**bits - 1, order.py's domain
    shift,  # max(1, bits // 2)
    BLOCK: tl.constexpr,  # lanes of a step (power of two >= the group's batch sizes, unless CHUNKED)
    CHUNKED: tl.constexpr,  # some batch of the group is larger than BLOCK
    EVAL_BLOCK: tl.constexpr,  # lanes of the per-epoch loss passes
    HAS_VAL: tl.constexpr,  # nv > 0
    WALK: tl.constexpr,  # n is not a power of two: the order needs cycle walking
    FAST: tl.constexpr,  # float32 on a GPU: the sigmoid's exp and reciprocal in single instructions
):
    """kernels.run_trials for trial trials[program_id], up to max_epochs whole epochs."""
    k = tl.load(trials_ptr + tl.program_id(0)).to(tl.int64)
    dtype = xy_ptr.dtype.element_ty
    lr = tl.load(lr_ptr + k).to(dtype)
    batch = tl.load(batch_ptr + k)
    epochs = tl.load(epochs_ptr + k)
    shuffle = tl.load(shuffle_ptr + k)
    patience = tl.load(patience_ptr + k)
    min_delta = tl.load(min_delta_ptr + k)
    seed = tl.load(seed_ptr + k).to(tl.uint64, bitcast=True)

    row, good = theta_ptr + k * 7, last_good_ptr + k * 7
    w11, w12, b11, b12, w21, w22, b2 = _load7(row)
    g11, g12, gb11, gb12, g21, g22, gb2 = _load7(good)
    srow = state_ptr + k * _STATE_SIZE
    epoch = tl.load(srow + _EPOCH).to(tl.int32)
    best = tl.load(srow + _BEST)
    wait = tl.load(srow + _WAIT)
    status = tl.load(srow + _STATUS).to(tl.int32)

    n_u = n.to(tl.uint32)
    mask_u = mask.to(tl.uint32)
    shift_u = shift.to(tl.uint32)
    stop = tl.where(tl.load(drop_last_ptr + k) != 0, n - n % batch, n)
    steps = (stop + batch - 1) // batch
    # g's factor 2/m: m = batch, or the short last batch's own size.
    c_full = _exact_div(tl.full([], 2.0, dtype), batch.to(dtype))
    c_last = _exact_div(tl.full([], 2.0, dtype), (stop - (steps - 1) * batch).to(dtype))
    lanes = tl.arange(0, BLOCK)

    done = epoch * 0
    while (done < max_epochs) & (status == _RUNNING):
        keys = _epoch_keys(seed, epoch)
        for step in range(0, steps):
            start = step * batch
            m = tl.minimum(batch, stop - start)  # the last batch may be short: its own size
            c = tl.where(m == batch, c_full, c_last)
            theta = (w11, w12, b11, b12, w21, w22, b2)
            if CHUNKED:  # a batch of more than BLOCK points: its sums accumulate over chunks
                s0 = tl.full([BLOCK], 0.0, dtype)
                s1, s2, s3, s4, s5, s6 = s0, s0, s0, s0, s0, s0
                for off in range(0, m, BLOCK):
                    pos, valid = start + off + lanes, off + lanes < m
                    t = _batch_terms(xy_ptr, pos, valid, c, shuffle, n_u, shift_u, mask_u, keys, theta, WALK, FAST)
                    s0, s1, s2, s3 = s0 + t[0], s1 + t[1], s2 + t[2], s3 + t[3]
                    s4, s5, s6 = s4 + t[4], s5 + t[5], s6 + t[6]
            else:
                s0, s1, s2, s3, s4, s5, s6 = _batch_terms(
                    xy_ptr, start + lanes, lanes < m, c, shuffle, n_u, shift_u, mask_u, keys, theta, WALK, FAST
                )
            w11 -= lr * _total(s0)
            w12 -= lr * _total(s1)
            b11 -= lr * _total(s2)
            b12 -= lr * _total(s3)
            w21 -= lr * _total(s4)
            w22 -= lr * _total(s5)
            b2 -= lr * _total(s6)

        theta = (w11, w12, b11, b12, w21, w22, b2)
        loss = _mse(xy_ptr, n, theta, EVAL_BLOCK, FAST)
        if HAS_VAL:
            val_loss = _mse(xyv_ptr, nv, theta, EVAL_BLOCK, FAST)
            watched = val_loss
        else:
            val_loss = tl.full([], 0.0, tl.float64)
            watched = loss
        ok = _finite(loss) & _finite(val_loss) & _finite(w11) & _finite(w12) & _finite(b11) & _finite(b12)
        ok = ok & _finite(w21) & _finite(w22) & _finite(b2)
        # Diverged: back to the last good parameters. Else these become the last good ones.
        w11, w12, b11, b12 = (
            tl.where(ok, w11, g11),
            tl.where(ok, w12, g12),
            tl.where(ok, b11, gb11),
            tl.where(ok, b12, gb12),
        )
        w21, w22, b2 = tl.where(ok, w21, g21), tl.where(ok, w22, g22), tl.where(ok, b2, gb2)
        g11, g12, gb11, gb12, g21, g22, gb2 = w11, w12, b11, b12, w21, w22, b2
        at = k * e_max + epoch
        tl.store(losses_ptr + at, loss, mask=ok)
        tl.store(val_losses_ptr + at, val_loss, mask=ok)
        # kernels.early_stopping_update
        improved = watched < best - min_delta
        best = tl.where(ok & improved, watched, best)
        wait = tl.where(ok, tl.where(improved, 0.0, wait + 1.0), wait)
        early = ok & (patience > 0) & (wait >= patience.to(tl.float64))
        completed = ok & (epoch + 1 >= epochs)
        status = tl.where(ok, tl.where(early, _STOPPED_EARLY, tl.where(completed, _COMPLETED, _RUNNING)), _DIVERGED)
        epoch = tl.where(ok, epoch + 1, epoch)
        done += 1

    _store7(row, (w11, w12, b11, b12, w21, w22, b2))
    _store7(good, (g11, g12, gb11, gb12, g21, g22, gb2))
    tl.store(srow + _EPOCH, epoch.to(tl.float64))
    tl.store(srow + _BEST, best)
    tl.store(srow + _WAIT, wait)
    tl.store(srow + _STATUS, status.to(tl.float64))


def _pow2_at_least(v: int) -> int:
    return 1 << max(0, v - 1).bit_length()


def _int32(values: npt.NDArray[Any]) -> npt.NDArray[np.int32]:
    """Counts as int32 for the kernel; larger ones (a patience no run reaches) are clipped."""
    return np.minimum(values.astype(np.int64), _MAX_INT32).astype(np.int32)


def interpreted() -> bool:
    """Whether the kernel runs in Triton's interpreter (TRITON_INTERPRET=1 when this module was
    imported): then on CPU tensors, with no GPU."""
    return isinstance(_fleet_kernel, InterpretedFunction)


class GpuEngine:
    """A fleet's trials trained by _fleet_kernel: the data and per-trial arrays live on the device.

    run(epochs) advances every running trial by up to `epochs` whole epochs (one launch per
    group of like batch size) and copies the trials' new state back into the fleet's arrays."""

    def __init__(self, fleet: Fleet, device: str = "cuda") -> None:
        self.fleet = fleet
        dev = torch.device(device)
        if dev.type == "cuda" and dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        if dev.type != "cuda" and not interpreted():
            raise ValueError(
                f"device {device} needs Triton's interpreter: TRITON_INTERPRET=1 before importing model.gpu"
            )
        self.device = dev
        self.device_name = str(dev)
        # The PTX sigmoid: float32 on an NVIDIA GPU (a ROCm build of torch also says "cuda").
        nvidia = dev.type == "cuda" and torch.version.hip is None
        self.fast = _FAST_SIGMOID and nvidia and fleet.x.dtype == np.float32
        n, nv = fleet.x.shape[0], fleet.xv.shape[0]
        if n >= 2**30:
            raise ValueError(f"the GPU engine takes fewer than 2**30 training points, not {n}")
        self.n, self.nv = n, nv
        bits = int(order.domain_bits(n))
        self.mask, self.shift = (1 << bits) - 1, max(1, bits // 2)

        def put(a: npt.NDArray[Any]) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a)).to(dev)

        self.xy = put(np.stack([fleet.x, fleet.y], axis=1))
        # A dummy row when there is no validation split: the kernel never reads it (HAS_VAL).
        self.xyv = put(np.stack([fleet.xv, fleet.yv], axis=1) if nv else np.zeros((1, 2), dtype=fleet.x.dtype))
        self.theta, self.last_good = put(fleet.theta), put(fleet.last_good)
        self.state, self.losses, self.val_losses = put(fleet.state), put(fleet.losses), put(fleet.val_losses)
        self.lr, self.min_delta = put(fleet.lr.astype(np.float64)), put(fleet.min_delta.astype(np.float64))
        self.batch_size, self.epochs = put(_int32(fleet.batch_size)), put(_int32(fleet.epochs))
        self.shuffle, self.drop_last = put(fleet.shuffle.astype(np.int32)), put(fleet.drop_last.astype(np.int32))
        self.patience = put(_int32(fleet.patience))
        self.order_seed = put(fleet.order_seed.astype(np.uint64).view(np.int64))
        # Each trial's block: the power of two at least its batch size, in [_MIN_BLOCK, _MAX_BLOCK].
        self.block = np.clip([_pow2_at_least(int(b)) for b in fleet.batch_size], _MIN_BLOCK, _MAX_BLOCK)

    def run(self, epochs: int) -> None:
        """Advance every running trial by up to `epochs` whole epochs; the fleet's arrays follow."""
        fleet = self.fleet
        running = fleet.running()
        if epochs < 1 or running.size == 0:
            return
        before = fleet.state[running, kernels.EPOCH]
        for block in np.unique(self.block[running]):
            self._launch(running[self.block[running] == block], int(block), epochs)
        rows = torch.from_numpy(running).to(self.device)
        fleet.theta[running] = self.theta.index_select(0, rows).cpu().numpy()
        fleet.last_good[running] = self.last_good.index_select(0, rows).cpu().numpy()
        fleet.state[running] = self.state.index_select(0, rows).cpu().numpy()
        # Only the loss columns these trials could have written in this call.
        cols = slice(int(before.min()), min(fleet.losses.shape[1], int(before.max()) + epochs))
        fleet.losses[running, cols] = self.losses[:, cols].index_select(0, rows).cpu().numpy()
        fleet.val_losses[running, cols] = self.val_losses[:, cols].index_select(0, rows).cpu().numpy()

    def _launch(self, group: npt.NDArray[np.int64], block: int, epochs: int) -> None:
        warps = max(1, min(8, block // 128))
        eval_block = max(32 * warps, min(_pow2_at_least(max(self.n, self.nv)), 128 * warps))
        trials = torch.from_numpy(group.astype(np.int32)).to(self.device)
        _fleet_kernel[(len(group),)](
            trials,
            self.xy,
            self.n,
            self.xyv,
            self.nv,
            self.theta,
            self.last_good,
            self.state,
            self.losses,
            self.val_losses,
            self.losses.shape[1],
            self.lr,
            self.batch_size,
            self.epochs,
            self.shuffle,
            self.drop_last,
            self.patience,
            self.min_delta,
            self.order_seed,
            epochs,
            self.mask,
            self.shift,
            BLOCK=block,
            CHUNKED=bool((self.fleet.batch_size[group] > block).any()),
            EVAL_BLOCK=eval_block,
            HAS_VAL=self.nv > 0,
            WALK=self.mask + 1 != self.n,
            FAST=self.fast,
            num_warps=warps,
            enable_fp_fusion=_FP_FUSION,
        )
