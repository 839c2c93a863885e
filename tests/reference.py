"""A slow, obviously correct 1-2-1 trainer, written straight from docs/model.md, for tests to compare with."""

import math

NAMES = ("w11", "w12", "b11", "b12", "w21", "w22", "b2")


def sigmoid(t: float) -> float:
    return 1.0 / (1.0 + math.exp(-t)) if t >= 0 else math.exp(t) / (1.0 + math.exp(t))


def forward(p: dict[str, float], x: float) -> float:
    return p["w21"] * sigmoid(p["w11"] * x + p["b11"]) + p["w22"] * sigmoid(p["w12"] * x + p["b12"]) + p["b2"]


def mse(p: dict[str, float], xs: list[float], ys: list[float]) -> float:
    return sum((forward(p, x) - y) ** 2 for x, y in zip(xs, ys, strict=True)) / len(xs)


def gradient(p: dict[str, float], xs: list[float], ys: list[float]) -> dict[str, float]:
    """The gradient of the batch MSE, formula by formula from docs/model.md."""
    n = len(xs)
    g = dict.fromkeys(NAMES, 0.0)
    for x, y in zip(xs, ys, strict=True):
        u1, u2 = sigmoid(p["w11"] * x + p["b11"]), sigmoid(p["w12"] * x + p["b12"])
        dy = 2.0 / n * (forward(p, x) - y)
        g["w21"] += dy * u1
        g["w22"] += dy * u2
        g["b2"] += dy
        du1, du2 = dy * p["w21"], dy * p["w22"]
        g["w11"] += du1 * u1 * (1 - u1) * x
        g["w12"] += du2 * u2 * (1 - u2) * x
        g["b11"] += du1 * u1 * (1 - u1)
        g["b12"] += du2 * u2 * (1 - u2)
    return g


def plain_train(
    xs: list[float],
    ys: list[float],
    init: dict[str, float],
    lr: float,
    batch_size: int,
    epochs: int,
    drop_last: bool = False,
) -> tuple[dict[str, float], list[float]]:
    """Mini-batch GD in the stored order (no shuffle): parameters and per-epoch training MSE."""
    p = dict(init)
    history = []
    stop = len(xs) - len(xs) % batch_size if drop_last else len(xs)
    for _ in range(epochs):
        for s in range(0, stop, batch_size):
            g = gradient(p, xs[s : min(s + batch_size, stop)], ys[s : min(s + batch_size, stop)])
            p = {k: p[k] - lr * g[k] for k in NAMES}
        history.append(mse(p, xs, ys))
    return p, history
