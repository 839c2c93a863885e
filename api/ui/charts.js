// Charts: line and scatter charts drawn by uPlot (vendor/), with tick steps and labels that
// hold for any float (a diverged run's loss of 1e70 included).
import { fmt } from "./dom.js";

// Okabe and Ito's palette: told apart with the common kinds of colour blindness.
export const COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"];

// Tick steps of 1, 2 and 5 times every power of ten a float has: uPlot's own list ends near 1e16,
// and an axis past it (a diverged run's loss of 1e70) would be drawn with no ticks at all.
const INCRS = [];
for (let e = -300; e <= 300; e++) INCRS.push(10 ** e, 2 * 10 ** e, 5 * 10 ** e);

const axis = (label, extra = {}) => ({
  label,
  incrs: INCRS,
  stroke: "#222",
  grid: { stroke: "#e3e3e3", width: 1 },
  ticks: { stroke: "#bbb", width: 1 },
  ...extra,
});

// Series drawn as points only (a scatter within uPlot's shared-x data).
export const scatter = (label, color, size = 4) => ({
  label,
  stroke: color,
  fill: color,
  paths: () => null,
  points: { show: true, size, width: 0, fill: color },
  value: (_u, v) => fmt(v),
});

export const line = (label, color, extra = {}) => ({
  label,
  stroke: color,
  width: 2,
  points: { show: false },
  spanGaps: true,
  value: (_u, v) => fmt(v),
  ...extra,
});

const HEIGHT = 300;

// Ticks of a log axis: 1, 2 and 5 times each power of ten over a few decades, else powers of ten
// far enough apart for about six labels (a diverged run spans seventy decades).
function logSplits(_u, _axis, min, max) {
  const lo = Math.floor(Math.log10(min));
  const hi = Math.ceil(Math.log10(max));
  const step = Math.max(1, Math.ceil((hi - lo) / 6));
  const ticks = [];
  for (let e = lo; e <= hi; e += step) ticks.push(...(hi - lo <= 3 ? [1, 2, 5] : [1]).map((m) => m * 10 ** e));
  return ticks.filter((v) => v >= min * (1 - 1e-9) && v <= max * (1 + 1e-9));
}

// Every one of those ticks labelled: uPlot's own filter would blank most of them.
const logTicks = { splits: logSplits, filter: (_u, splits) => splits };

// An x axis of named values (booleans, objects) drawn at 0, 1, 2...
const categories = (labels) => ({
  splits: () => labels.map((_, i) => i),
  values: (_u, ticks) => ticks.map((i) => labels[i] ?? ""),
});

// A uPlot chart filling container's width (and following it when the page is resized); with
// xLabels, x values are indices into them.
export function chart(
  container,
  { xLabel, yLabel, series, data, logX = false, logY = false, xLabels, height = HEIGHT },
) {
  const x = { time: false, distr: logX ? 3 : 1, ...(xLabels ? { range: [-0.5, xLabels.length - 0.5] } : {}) };
  const options = {
    width: Math.max(280, container.clientWidth),
    height,
    scales: { x, y: { distr: logY ? 3 : 1 } },
    axes: [
      axis(xLabel, xLabels ? categories(xLabels) : logX ? logTicks : {}),
      axis(yLabel, {
        size: 64,
        values: (_u, ticks) => ticks.map((v) => (v == null ? "" : fmt(v))),
        ...(logY ? logTicks : {}),
      }),
    ],
    series: [{ label: xLabel, value: (_u, v) => (xLabels ? (xLabels[v] ?? "") : fmt(v)) }, ...series],
    cursor: { drag: { x: true, y: false } },
  };
  const made = new uPlot(options, data, container);
  const resize = new ResizeObserver(() => made.setSize({ width: Math.max(280, container.clientWidth), height }));
  resize.observe(container);
  const destroy = made.destroy.bind(made);
  made.destroy = () => {
    resize.disconnect();
    destroy();
  };
  return made;
}

// At most max of the indices 0..n-1, evenly spaced, the last always in: a million epochs drawn
// as a few thousand points look the same and keep the page quick.
export function thinned(n, max) {
  if (n <= max) return null;
  const step = (n - 1) / (max - 1);
  return Array.from({ length: max }, (_, i) => Math.round(i * step));
}
