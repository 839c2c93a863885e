// A sweep's page: its progress, the leaderboard, the objective over what it varies and the best
// trials' loss curves overlaid, refreshed while it runs.
import { getJSON, sleep } from "./api.js";
import { badge, fmt, h, heading, name, progressBar, section, TERMINAL, table, valueText } from "./dom.js";
import { pickBox } from "./picks.js";
import { lossOverlay } from "./plots.js";
import { rungsChart } from "./rungs.js";
import { axisPicker, objectivePanel, slicePlots, sweptKeys } from "./sweep-plots.js";

// Every trial, in index order (the heatmap needs them all), at most `most` of them.
async function allTrials(sweepId, signal, most = 2000) {
  const trials = [];
  let cursor = null;
  do {
    const got = await getJSON(
      `/v1/sweeps/${sweepId}/trials?order_by=index&limit=100${cursor ? `&cursor=${cursor}` : ""}`,
      { signal },
    );
    trials.push(...got.items);
    cursor = got.next_cursor;
  } while (cursor && trials.length < most);
  return trials;
}

function summaryOf(sweep) {
  const t = sweep.trials;
  const kinds = ["succeeded", ...(sweep.halving ? ["pruned"] : []), "failed", "running", "queued", "cancelled"];
  const counts = kinds.map((k) => `${fmt(t[k])} ${k}`);
  const best = sweep.best ? `${fmt(sweep.best.objective)} (trial ${sweep.best.index})` : "—";
  return [
    progressBar(sweep.progress.epochs_completed, sweep.progress.epochs, "epochs completed, all trials"),
    h("span", {}, `trials: ${fmt(t.total)} (${counts.join(", ")})`),
    h("span", {}, "best ", h("strong", {}, best)),
    sweep.error ? h("span", { class: "error-text" }, `${sweep.error.code}: ${sweep.error.message}`) : null,
  ].filter(Boolean);
}

const leaderRow = (sweep, t, rank, keys) =>
  h(
    "tr",
    { "data-index": t.index },
    h("td", { class: "num" }, t.objective != null ? rank : "—"),
    h("th", { scope: "row" }, pickBox(`${sweep.id}:${t.index}`, `trial ${t.index}`), ` #${t.index}`),
    keys.map((k) => h("td", { class: "num" }, valueText(t.hyperparameters[k]))),
    h("td", {}, badge(t.status)),
    h("td", { class: "num" }, fmt(t.objective)),
    h("td", { class: "num" }, t.result ? fmt(t.result.epochs_completed) : "—"),
  );

export async function sweepPage({ view, signal, id }) {
  let sweep = await getJSON(`/v1/sweeps/${encodeURIComponent(id)}`, { signal });
  const keys = sweptKeys(sweep);
  // Two axes for a grid: the first two swept keys, seeds last (a seed is noise, not a setting).
  const byInterest = [...keys.filter((k) => k !== "seed"), ...keys.filter((k) => k === "seed")];
  const axes = sweep.grid && keys.length >= 2 ? byInterest.slice(0, 2) : byInterest.slice(0, 1);
  const title = heading(`Sweep ${name(sweep)}`, sweep.status);
  const summary = h("div", { class: "summary", "aria-live": "polite" });
  const board = h("tbody", { id: "leaderboard" });
  const objectiveBox = h("div", { id: "objective-chart", class: "chart" });
  const curvesBox = h("div", {
    id: "best-curves",
    class: "chart",
    role: "img",
    "aria-label": "Loss curves of the best trials",
  });
  const objective = sweep.objective.replaceAll("_", " ");
  const validation = sweep.objective === "final_validation_loss";
  const slices = h("div", { id: "slices", class: "slices" });
  const rungsBox = h("div", { id: "rungs-chart", class: "chart", role: "img" });
  const rungsNote = h("p", { class: "hint", id: "rungs-note" });
  let trials = [];
  const objectiveTitle = h("h2", { id: "objective-title" });
  const redrawObjective = () => {
    objectiveTitle.textContent = `${objective} over ${axes.join(" and ") || "the trials"}`;
    objectivePanel(objectiveBox, sweep, trials, keys, axes);
  };
  view.replaceChildren(
    title,
    summary,
    h(
      "div",
      { class: "two" },
      h(
        "section",
        { "aria-labelledby": "objective-title" },
        h("div", { class: "section-head" }, objectiveTitle, axisPicker(keys, axes, redrawObjective)),
        objectiveBox,
      ),
      section("curves", "Loss curves of the best trials", null, curvesBox),
    ),
    section(
      "board",
      "Leaderboard",
      null,
      table(`The best trials by ${objective}`, ["Rank", "Trial", ...keys, "Status", objective, "Epochs"], board),
    ),
    sweep.halving
      ? section("rungs", "Rungs: each trial's curve up to where it ended", null, rungsNote, rungsBox)
      : null,
    keys.length ? section("slices", `${objective} by each swept hyperparameter`, null, slices) : null,
  );
  title.focus();

  async function leaderboard() {
    const top = (await getJSON(`/v1/sweeps/${sweep.id}/trials?order_by=objective&limit=10`, { signal })).items;
    board.replaceChildren(...top.map((t, i) => leaderRow(sweep, t, i + 1, keys)));
    return top.filter((t) => t.objective != null).slice(0, 5);
  }

  async function curves(best) {
    const results = await Promise.all(
      best.map((t) => getJSON(`/v1/sweeps/${sweep.id}/trials/${t.index}?max_points=500`, { signal })),
    );
    const runs = results.map((t) => ({
      label: `#${t.index} ${keys.map((k) => `${k} ${valueText(t.hyperparameters[k])}`).join(", ")}`,
      epochs: t.result.epochs,
      loss: validation ? t.result.validation_loss_history : t.result.loss_history,
    }));
    lossOverlay(curvesBox, runs, validation ? "validation loss" : "loss");
    if (!runs.length) curvesBox.append(h("p", { class: "wait" }, "No trial has succeeded yet."));
  }

  let ended = -1;
  let bestShown = "";
  for (;;) {
    title.replaceChildren(`Sweep ${name(sweep)} `, badge(sweep.status));
    summary.replaceChildren(...summaryOf(sweep));
    const best = await leaderboard();
    const t = sweep.trials;
    const nowEnded = t.succeeded + t.failed + t.cancelled + t.pruned;
    if (nowEnded !== ended) {
      ended = nowEnded;
      trials = await allTrials(sweep.id, signal);
      redrawObjective();
      slicePlots(slices, sweep, trials, keys);
      if (sweep.halving) await rungsChart(rungsBox, rungsNote, sweep, trials, signal);
    }
    const bestNow = best.map((b) => b.index).join();
    if (bestNow !== bestShown) {
      bestShown = bestNow;
      await curves(best);
    }
    view.dataset.loaded = "true";
    if (TERMINAL.has(sweep.status)) return;
    await sleep(2000, signal);
    sweep = await getJSON(`/v1/sweeps/${sweep.id}`, { signal });
  }
}
