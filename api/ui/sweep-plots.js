// A sweep's objective over what it varies: a heatmap for two swept hyperparameters of a grid
// (the best trial of each pair), a line for one numeric, points for random draws.
import { COLORS, chart, line, scatter } from "./charts.js";
import { fmt, h, valueText } from "./dom.js";
import { heatmap } from "./heatmap.js";

// The hyperparameters a sweep varies, in the order its request named them (a search's: as random's).
export function sweptKeys(sweep) {
  if (sweep.grid) return Object.keys(sweep.grid).filter((k) => sweep.grid[k].length > 1);
  return Object.keys(sweep.random || sweep.search || {})
    .filter((k) => !["trials", "seed", "sampler", "batch"].includes(k))
    .map((k) => k.replace(/_values$/, ""));
}

function clear(box) {
  box.chart?.destroy();
  box.chart = null;
  box.replaceChildren();
  box.removeAttribute("role");
  box.dataset.kind = "";
}

function heatmapOf(box, sweep, trials, [rk, ck], label) {
  const rows = sweep.grid[rk].map(valueText);
  const cols = sweep.grid[ck].map(valueText);
  const cells = rows.map(() => cols.map(() => ({ value: null, trials: 0, failed: 0 })));
  for (const t of trials) {
    const cell =
      cells[rows.indexOf(valueText(t.hyperparameters[rk]))]?.[cols.indexOf(valueText(t.hyperparameters[ck]))];
    if (!cell) continue;
    cell.trials += 1;
    if (t.status === "failed") cell.failed += 1;
    if (t.objective != null && (cell.value == null || t.objective < cell.value)) cell.value = t.objective;
  }
  box.dataset.kind = "heatmap";
  box.append(
    heatmap({ width: box.clientWidth || 600, rowLabel: rk, colLabel: ck, rows, cols, cells, valueLabel: label }),
  );
}

export function objectivePanel(box, sweep, trials, keys, axes) {
  const label = sweep.objective.replaceAll("_", " ");
  clear(box);
  if (!keys.length) return box.append(h("p", {}, "This sweep varies no hyperparameter."));
  if (sweep.grid && axes.length === 2) return heatmapOf(box, sweep, trials, axes, label);
  const key = axes[0];
  if (!trials.every((t) => typeof t.hyperparameters[key] === "number"))
    return box.append(h("p", {}, `${key} is not a number: see the leaderboard.`));
  const best = new Map();
  for (const t of trials.filter((t) => t.objective != null && t.objective > 0)) {
    const x = t.hyperparameters[key];
    if (!best.has(x) || t.objective < best.get(x)) best.set(x, t.objective);
  }
  const xs = [...best.keys()].sort((a, b) => a - b);
  if (!xs.length) return box.append(h("p", {}, "No trial has succeeded yet."));
  const drawn = sweep.grid
    ? line(`best ${label}`, COLORS[0], { points: { show: true, size: 7 } })
    : scatter(label, COLORS[0], 6);
  box.dataset.kind = sweep.grid ? "line" : "scatter";
  box.setAttribute("role", "img");
  box.setAttribute(
    "aria-label",
    `Best ${label} by ${key}: ${xs.length} values, the lowest ${fmt(Math.min(...best.values()))}`,
  );
  box.chart = chart(box, {
    xLabel: key,
    yLabel: `${label} (log scale)`,
    logX: logScaled(sweep, key, xs),
    logY: true,
    data: [xs, xs.map((x) => best.get(x))],
    series: [drawn],
  });
}

export function axisPicker(keys, axes, onChange) {
  if (keys.length < 2) return null;
  const select = (id, text, i) =>
    h(
      "label",
      {},
      `${text} `,
      h(
        "select",
        {
          id,
          onchange: (e) => {
            axes[i] = e.target.value;
            onChange();
          },
        },
        keys.map((k) => h("option", { value: k, selected: axes[i] === k }, k)),
      ),
    );
  // A grid's heatmap has two axes; a line or a scatter has one.
  const picks =
    axes.length === 2 ? [select("rows-key", "Rows", 0), select("cols-key", "Columns", 1)] : [select("x-key", "By", 0)];
  return h("div", { class: "controls" }, picks);
}

// How a swept hyperparameter spreads: a random sweep's range says log; a grid's positive values
// a hundredfold apart or more are drawn on a log axis too.
function logScaled(sweep, key, xs) {
  const range = sweep.random?.[key];
  if (range && typeof range === "object" && !Array.isArray(range)) return Boolean(range.log);
  return xs.length > 1 && xs[0] > 0 && xs.at(-1) / xs[0] >= 100;
}

// One slice: every finished trial's objective against one swept hyperparameter.
function slice(box, sweep, trials, key, label) {
  const ok = trials.filter((t) => t.objective != null && t.objective > 0);
  const numeric = ok.every((t) => typeof t.hyperparameters[key] === "number");
  const labels = numeric ? null : [...new Set(ok.map((t) => valueText(t.hyperparameters[key])))].sort();
  const xOf = (t) => (numeric ? t.hyperparameters[key] : labels.indexOf(valueText(t.hyperparameters[key])));
  const sorted = [...ok].sort((a, b) => xOf(a) - xOf(b));
  const xs = sorted.map(xOf);
  const log = numeric && logScaled(sweep, key, xs);
  box.dataset.points = sorted.length;
  box.dataset.scale = log ? "log" : "linear";
  if (labels) box.dataset.categories = labels.join(",");
  box.setAttribute("aria-label", `${label} of ${sorted.length} trials by ${key}${log ? " (log axis)" : ""}`);
  if (!sorted.length) return box.append(h("p", { class: "wait" }, "No trial has finished yet."));
  box.chart = chart(box, {
    xLabel: log ? `${key} (log scale)` : key,
    yLabel: `${label} (log)`,
    logX: log,
    logY: true,
    xLabels: labels,
    height: 220,
    data: [xs, sorted.map((t) => t.objective)],
    series: [scatter(label, COLORS[0], 6)],
  });
}

// A slice per swept hyperparameter, as optuna-dashboard's slice plot.
export function slicePlots(container, sweep, trials, keys) {
  const label = sweep.objective.replaceAll("_", " ");
  for (const old of container.querySelectorAll(".chart")) old.chart?.destroy();
  container.replaceChildren(
    ...keys.map((key) => {
      const box = h("div", { class: "chart slice", id: `slice-${key}`, role: "img", "data-key": key });
      return h("figure", {}, h("figcaption", {}, key.replaceAll("_", " ")), box);
    }),
  );
  for (const box of container.querySelectorAll(".slice")) slice(box, sweep, trials, box.dataset.key, label);
}
