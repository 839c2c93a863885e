// A halving sweep's rungs: every ended trial's validation loss (training loss without a split) up
// to where it ended, on one log axis: a pruned trial's curve stops at its rung, the survivors'
// go on to the end and are drawn bold.
import { getJSON } from "./api.js";
import { chart, line } from "./charts.js";
import { fmt, h } from "./dom.js";

const MOST = 100; // the most trials drawn: each is one request for its history
const ENDED = new Set(["succeeded", "pruned", "failed", "cancelled"]);

export async function rungsChart(box, note, sweep, trials, signal) {
  const ended = trials.filter((t) => ENDED.has(t.status) && t.epochs_completed > 0);
  const shown = ended.slice(0, MOST);
  const results = await Promise.all(
    shown.map((t) => getJSON(`/v1/sweeps/${sweep.id}/trials/${t.index}?max_points=200`, { signal })),
  );
  const runs = results.filter((t) => t.result);
  const validation = runs.some((t) => t.result.validation_loss_history);
  const kind = validation ? "validation loss" : "loss";
  const pruned = runs.filter((t) => t.status === "pruned").length;
  note.textContent = `${fmt(runs.length)} of ${fmt(trials.length)} trials drawn (${fmt(pruned)} pruned at their rung)${
    ended.length > MOST ? `: the first ${MOST} that ended` : ""
  }`;
  box.chart?.destroy();
  box.chart = null;
  box.replaceChildren();
  box.dataset.series = runs.length;
  box.setAttribute("aria-label", `${kind} by epoch of ${runs.length} trials, ${pruned} of them pruned`);
  if (!runs.length) return box.append(h("p", { class: "wait" }, "No trial has ended yet."));
  const curve = (t) => (validation ? t.result.validation_loss_history : t.result.loss_history) ?? [];
  // Survivors over the pruned: uPlot draws later series on top.
  const order = [...runs].sort((a, b) => (b.status === "pruned") - (a.status === "pruned"));
  box.chart = chart(box, {
    xLabel: "epoch",
    yLabel: `${kind} (log scale)`,
    logY: true,
    data: uPlot.join(order.map((t) => [t.result.epochs, curve(t).map((v) => (v > 0 ? v : null))])),
    series: order.map((t) =>
      t.status === "pruned"
        ? line(`#${t.index} pruned at ${fmt(t.rung ?? t.epochs_completed)}`, "#9a9a9a", { width: 1 })
        : line(`#${t.index} ${t.status}`, t.status === "succeeded" ? "#D55E00" : "#0072B2", { width: 2.5 }),
    ),
  });
}
