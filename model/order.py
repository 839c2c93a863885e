"""The batch order: which point goes where in epoch e of a run, one position at a time.

The order of epoch e is a permutation of the n training points computed per position, so a
GPU thread finds the points of its mini-batch without a sequential shuffle, and every device
and every trial of a sweep gets the same batches from the same seed:

- D = 2**bits is the smallest power of two >= n (bits >= 1).
- The epoch's keys: four rounds r = 0..3, each an odd multiplier a_r and an addend c_r
  (32 bits each) from splitmix64(seed + (4 * e + r + 1) * GOLDEN): a_r = high word | 1,
  c_r = low word.
- One round maps p in [0, D) to ((p ^ (p >> h)) * a_r + c_r) mod D, h = max(1, bits // 2);
  each step (xor-shift right, odd multiply, add) is a bijection of [0, D), so the round is.
- Position i of the epoch holds point perm(i): apply the four rounds to i, again and again
  until the value is < n (cycle walking: a bijection of [0, D) restricted to [0, n)).

Without shuffling, position i holds point i. The numba functions here are the CPU's; the
GPU kernel (gpu.py) computes the same integers with the same constants.
"""

import numpy as np
from numba import njit

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
ROUNDS = 4
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_LOW32 = np.uint64(0xFFFFFFFF)


@njit(cache=True, error_model="numpy", nogil=True)
def splitmix64(z):
    """splitmix64's output function of a 64-bit word (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@njit(cache=True, error_model="numpy", nogil=True)
def domain_bits(n):
    """bits of the smallest power of two >= n, at least 1."""
    bits = 1
    while (1 << bits) < n:
        bits += 1
    return bits


@njit(cache=True, error_model="numpy", nogil=True)
def epoch_keys(seed, epoch, keys):
    """Fill keys [2 * ROUNDS] uint64 with (a_0, c_0, ..., a_3, c_3) of this epoch."""
    for r in range(ROUNDS):
        z = splitmix64(seed + np.uint64(ROUNDS * epoch + r + 1) * GOLDEN)
        keys[2 * r] = (z >> np.uint64(32)) | np.uint64(1)
        keys[2 * r + 1] = z & _LOW32


@njit(cache=True, error_model="numpy", nogil=True)
def position(i, n, bits, keys):
    """The point at position i of the epoch whose keys are given (a bijection of [0, n))."""
    mask = (np.uint64(1) << np.uint64(bits)) - np.uint64(1)
    shift = np.uint64(max(1, bits // 2))
    p = np.uint64(i)
    while True:
        for r in range(ROUNDS):
            p = ((p ^ (p >> shift)) * keys[2 * r] + keys[2 * r + 1]) & mask
        if p < np.uint64(n):
            return p


@njit(cache=True, error_model="numpy", nogil=True)
def permutation(n, seed, epoch):
    """The whole order of an epoch, as int64 point indices (what the tests check)."""
    keys = np.empty(2 * ROUNDS, dtype=np.uint64)
    epoch_keys(seed, epoch, keys)
    bits = domain_bits(n)
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        out[i] = position(i, n, bits, keys)
    return out
