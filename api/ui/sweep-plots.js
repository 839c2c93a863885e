// A sweep's objective over what it varies: a heatmap for two swept hyperparameters of a grid
// (the best trial of each pair), a line for one numeric, points for random draws.
import { COLORS, chart, line, scatter } from "./charts.js";
import { fmt, h, valueText } from "./dom.js";
import { heatmap } from "./heatmap.js";

// The hyperparameters a sweep varies, in the order its request named them.
export function sweptKeys(sweep) {
  if (sweep.grid) return Object.keys(sweep.grid).filter((k) => sweep.grid[k].length > 1);
  return Object.keys(sweep.random || {})
    .filter((k) => k !== "trials" && k !== "seed")
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
    logX: xs[0] > 0 && xs.at(-1) / xs[0] >= 100,
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
  return h("div", { class: "controls" }, select("rows-key", "Rows", 0), select("cols-key", "Columns", 1));
}
