// Charts: line and scatter charts drawn by uPlot (vendor/), the heatmap as SVG built here.
/* global uPlot */

// Okabe and Ito's palette: told apart with the common kinds of colour blindness.
export const COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"];

// A number in at most four significant digits, exponent form when very large or small.
export function fmt(v) {
  if (v == null || Number.isNaN(v)) return "—";
  if (typeof v !== "number") return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(3).replace(/\.?0+e/, "e");
  return Number.isInteger(v) ? v.toLocaleString("en") : String(Number(v.toPrecision(4)));
}

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
  value: (u, v) => fmt(v),
});

export const line = (label, color, extra = {}) => ({
  label,
  stroke: color,
  width: 2,
  points: { show: false },
  spanGaps: true,
  value: (u, v) => fmt(v),
  ...extra,
});

const HEIGHT = 300;

// Ticks of a log axis: 1, 2 and 5 times each power of ten over a few decades, else powers of ten
// far enough apart for about six labels (a diverged run spans seventy decades).
function logSplits(u, axisIdx, min, max) {
  const lo = Math.floor(Math.log10(min));
  const hi = Math.ceil(Math.log10(max));
  const step = Math.max(1, Math.ceil((hi - lo) / 6));
  const ticks = [];
  for (let e = lo; e <= hi; e += step) ticks.push(...(hi - lo <= 3 ? [1, 2, 5] : [1]).map((m) => m * 10 ** e));
  return ticks.filter((v) => v >= min * (1 - 1e-9) && v <= max * (1 + 1e-9));
}

// Every one of those ticks labelled: uPlot's own filter would blank most of them.
const logTicks = { splits: logSplits, filter: (u, splits) => splits };

// A uPlot chart filling container's width (and following it when the page is resized).
export function chart(container, { xLabel, yLabel, series, data, logX = false, logY = false }) {
  const options = {
    width: Math.max(280, container.clientWidth),
    height: HEIGHT,
    scales: { x: { time: false, distr: logX ? 3 : 1 }, y: { distr: logY ? 3 : 1 } },
    axes: [
      axis(xLabel, logX ? logTicks : {}),
      axis(yLabel, {
        size: 64,
        values: (u, ticks) => ticks.map((v) => (v == null ? "" : fmt(v))),
        ...(logY ? logTicks : {}),
      }),
    ],
    series: [{ label: xLabel, value: (u, v) => fmt(v) }, ...series],
    cursor: { drag: { x: true, y: false } },
  };
  const made = new uPlot(options, data, container);
  const resize = new ResizeObserver(() =>
    made.setSize({ width: Math.max(280, container.clientWidth), height: HEIGHT }),
  );
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

// Reversed viridis: the best (smallest) objective bright, the worst dark.
const VIRIDIS = [
  "#fde725",
  "#b5de2b",
  "#6ece58",
  "#35b779",
  "#1f9e89",
  "#26828e",
  "#31688e",
  "#3e4989",
  "#482878",
  "#440154",
];

function colorAt(t) {
  const x = Math.min(1, Math.max(0, t)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(x));
  const [a, b] = [VIRIDIS[i], VIRIDIS[i + 1]].map((c) => [1, 3, 5].map((k) => parseInt(c.slice(k, k + 2), 16)));
  return a.map((v, k) => Math.round(v + (b[k] - v) * (x - i)));
}

const hex = (rgb) => `#${rgb.map((v) => v.toString(16).padStart(2, "0")).join("")}`;
const luminance = ([r, g, b]) => (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255;

const SVG_NS = "http://www.w3.org/2000/svg";
function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  el.append(...children);
  return el;
}

// An SVG heatmap: rows x cols cells, cells[r][c] = {value, trials, failed} (value null: no
// finished trial), coloured on a log scale of value; the smallest value is outlined.
export function heatmap({ width, rowLabel, colLabel, rows, cols, cells, valueLabel }) {
  const left = 110;
  const top = 8;
  const bottom = 56;
  const legend = 90;
  const cw = Math.max(36, Math.min(110, (width - left - legend - 10) / cols.length));
  const ch = Math.max(24, Math.min(48, 360 / rows.length));
  const w = left + cw * cols.length + legend + 10;
  const h = top + ch * rows.length + bottom;
  const values = cells
    .flat()
    .filter((c) => c.value != null && c.value > 0)
    .map((c) => c.value)
    .sort((a, b) => a - b);
  const best = values.length ? values[0] : null;
  const lo = values.length ? Math.log10(values[0]) : 0;
  let hi = values.length ? Math.log10(values.at(-1)) : 1;
  // A diverged corner (a loss of 1e4 beside 1e-2) would paint every useful cell one colour: past
  // a spread of 100x the scale ends at the upper quartile, and anything above shares its colour.
  const capped = hi - lo > 2;
  if (capped) hi = Math.log10(values[Math.floor(0.75 * (values.length - 1))]);
  const scale = (v) => (hi > lo ? (Math.log10(v) - lo) / (hi - lo) : 0);

  const root = svg("svg", {
    id: "heatmap",
    width: w,
    height: h,
    viewBox: `0 0 ${w} ${h}`,
    role: "img",
    "aria-label": `Heatmap of the ${valueLabel} by ${rowLabel} (rows) and ${colLabel} (columns)`,
  });
  rows.forEach((row, r) => {
    root.append(
      svg(
        "text",
        { x: left - 8, y: top + ch * (r + 0.5), class: "tick", "text-anchor": "end", "dominant-baseline": "middle" },
        row,
      ),
    );
  });
  cols.forEach((col, c) => {
    root.append(
      svg(
        "text",
        { x: left + cw * (c + 0.5), y: top + ch * rows.length + 16, class: "tick", "text-anchor": "middle" },
        col,
      ),
    );
  });
  root.append(
    svg(
      "text",
      { x: left + (cw * cols.length) / 2, y: h - 10, class: "axis-label", "text-anchor": "middle" },
      colLabel,
    ),
    svg(
      "text",
      {
        x: 14,
        y: top + (ch * rows.length) / 2,
        class: "axis-label",
        "text-anchor": "middle",
        transform: `rotate(-90 14 ${top + (ch * rows.length) / 2})`,
      },
      rowLabel,
    ),
  );
  let outline = null;
  cells.forEach((line_, r) =>
    line_.forEach((cell, c) => {
      const x = left + cw * c;
      const y = top + ch * r;
      const ok = cell.value != null && cell.value > 0;
      const rgb = ok ? colorAt(scale(cell.value)) : [236, 236, 236];
      const what = ok
        ? `${valueLabel} ${fmt(cell.value)}`
        : cell.trials
          ? "no trial succeeded"
          : "no trial finished yet";
      const rect = svg(
        "rect",
        { x, y, width: cw - 2, height: ch - 2, fill: hex(rgb), class: "cell", "data-value": ok ? cell.value : "" },
        svg(
          "title",
          {},
          `${rowLabel} ${rows[r]}, ${colLabel} ${cols[c]}: ${what} (${cell.trials} trials, ${cell.failed} failed)`,
        ),
      );
      root.append(rect);
      if (cw >= 44 && ch >= 18) {
        const text = ok ? fmt(cell.value) : cell.failed ? "failed" : "—";
        const color = luminance(rgb) > 0.45 ? "#111" : "#fff";
        root.append(
          svg(
            "text",
            {
              x: x + (cw - 2) / 2,
              y: y + (ch - 2) / 2,
              fill: color,
              class: "cell-text",
              "text-anchor": "middle",
              "dominant-baseline": "middle",
            },
            text,
          ),
        );
      }
      if (ok && cell.value === best && !outline)
        outline = svg("rect", { x: x - 1, y: y - 1, width: cw, height: ch, class: "best-cell" });
    }),
  );
  if (outline) root.append(outline);
  // The legend: the colour scale from the best value (top) to the worst.
  const lx = left + cw * cols.length + 16;
  const gradient = svg("linearGradient", { id: "heat-scale", x1: 0, y1: 0, x2: 0, y2: 1 });
  VIRIDIS.forEach((color, i) =>
    gradient.append(svg("stop", { offset: i / (VIRIDIS.length - 1), "stop-color": color })),
  );
  const lh = Math.min(ch * rows.length, 200);
  root.append(
    svg("defs", {}, gradient),
    svg("rect", { x: lx, y: top, width: 14, height: lh, fill: "url(#heat-scale)" }),
    svg("text", { x: lx + 20, y: top + 10, class: "tick" }, values.length ? fmt(best) : "—"),
    svg(
      "text",
      { x: lx + 20, y: top + lh, class: "tick" },
      values.length ? `${capped ? "≥ " : ""}${fmt(10 ** hi)}` : "—",
    ),
  );
  return root;
}
