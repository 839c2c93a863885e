// The objective over two swept hyperparameters as an SVG heatmap, built here.
import { fmt } from "./dom.js";

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
  cells.forEach((line_, r) => {
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
    });
  });
  if (outline) root.append(outline);
  // The legend: the colour scale from the best value (top) to the worst.
  const lx = left + cw * cols.length + 16;
  const gradient = svg("linearGradient", { id: "heat-scale", x1: 0, y1: 0, x2: 0, y2: 1 });
  VIRIDIS.forEach((color, i) => {
    gradient.append(svg("stop", { offset: i / (VIRIDIS.length - 1), "stop-color": color }));
  });
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
