// The 1-2-1 network's forward pass, the one the dashboard draws every fitted curve with:
// y = w21 s(w11 x + b11) + w22 s(w12 x + b12) + b2, s the logistic sigmoid (model.md).

export const PARAMETERS = ["w11", "w12", "b11", "b12", "w21", "w22", "b2"];

const sigmoid = (z) => 0.5 * (1 + Math.tanh(0.5 * z)); // no overflow for large |z|

export function predict(p, x) {
  const y = p.w21 * sigmoid(p.w11 * x + p.b11) + p.w22 * sigmoid(p.w12 * x + p.b12) + p.b2;
  return Number.isFinite(y) ? y : null;
}

// The curve over [lo, hi] at n evenly spaced x: [xs, ys].
export function curve(p, lo, hi, n = 300) {
  const xs = Array.from({ length: n }, (_, i) => lo + ((hi - lo) * i) / (n - 1));
  return [xs, xs.map((x) => predict(p, x))];
}
