/* The plain-C baseline of the engine benchmark: the same work as one epoch of model/kernels.py.
 * Per epoch: Fisher-Yates shuffle (splitmix64), gather into contiguous copies, n/B mini-batch
 * SGD steps (the last batch may be short), then the exact MSE over all points in double.
 * A plain C version of the same training, with the per-epoch loss added. Built by benchmarks/engine.py. */
#include <math.h>
#include <stdint.h>

#ifndef REAL
#define REAL float
#endif
#if defined(REAL_IS_DOUBLE)
#define EXP exp
#else
#define EXP expf
#endif

static inline uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static inline REAL sigmoid(REAL z) { return (REAL)1 / ((REAL)1 + EXP(-z)); }

void train_epochs(const REAL *x, const REAL *y, int64_t n, REAL *theta, int64_t B, double lr_d,
                  int64_t epochs, uint64_t *rng, int32_t *idx, REAL *xs, REAL *ys, double *losses) {
    REAL lr = (REAL)lr_d;
    REAL w11 = theta[0], w12 = theta[1], b11 = theta[2], b12 = theta[3];
    REAL w21 = theta[4], w22 = theta[5], b2 = theta[6];
    for (int64_t ep = 0; ep < epochs; ep++) {
        for (int64_t i = n - 1; i > 0; i--) {
            int64_t j = (int64_t)(((unsigned __int128)splitmix64(rng) * (uint64_t)(i + 1)) >> 64);
            int32_t t = idx[i]; idx[i] = idx[j]; idx[j] = t;
        }
        for (int64_t i = 0; i < n; i++) { xs[i] = x[idx[i]]; ys[i] = y[idx[i]]; }
        for (int64_t s = 0; s < n; s += B) {
            int64_t e = s + B < n ? s + B : n;
            REAL c = (REAL)2 / (REAL)(e - s);
            REAL gw11 = 0, gw12 = 0, gb11 = 0, gb12 = 0, gw21 = 0, gw22 = 0, gb2 = 0;
            for (int64_t i = s; i < e; i++) {
                REAL xi = xs[i];
                REAL u1 = sigmoid(w11 * xi + b11), u2 = sigmoid(w12 * xi + b12);
                REAL g = c * (w21 * u1 + w22 * u2 + b2 - ys[i]);
                gw21 += g * u1; gw22 += g * u2; gb2 += g;
                REAL d1 = g * w21 * (u1 * ((REAL)1 - u1)), d2 = g * w22 * (u2 * ((REAL)1 - u2));
                gw11 += d1 * xi; gw12 += d2 * xi; gb11 += d1; gb12 += d2;
            }
            w11 -= lr * gw11; w12 -= lr * gw12; b11 -= lr * gb11; b12 -= lr * gb12;
            w21 -= lr * gw21; w22 -= lr * gw22; b2 -= lr * gb2;
        }
        double total = 0;
        for (int64_t i = 0; i < n; i++) {
            REAL r = w21 * sigmoid(w11 * x[i] + b11) + w22 * sigmoid(w12 * x[i] + b12) + b2 - y[i];
            total += (double)r * r;
        }
        losses[ep] = total / n;
    }
    theta[0] = w11; theta[1] = w12; theta[2] = b11; theta[3] = b12;
    theta[4] = w21; theta[5] = w22; theta[6] = b2;
}
