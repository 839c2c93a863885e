// Compare: jobs and sweep trials side by side: their loss curves and fitted curves overlaid, and
// their hyperparameters and results in one table. The address (#/compare/REF,REF,...) reopens it.
import { ApiError, getJSON } from "./api.js";
import { badge, h, heading, section, table, valueText } from "./dom.js";
import { PARAMETERS } from "./network.js";
import { picked, showLink, unpick } from "./picks.js";
import { FitChart, lossOverlay } from "./plots.js";

const POINTS = 1000; // loss entries per run drawn

// A run by its reference: a job id, or SWEEP_ID:INDEX for a trial.
async function load(ref, signal) {
  const [sweepId, index] = ref.split(":");
  if (index === undefined) {
    const job = await getJSON(`/v1/jobs/${encodeURIComponent(ref)}`, { signal });
    const curve =
      job.status === "succeeded" ? await getJSON(`/v1/jobs/${ref}/result?max_points=${POINTS}`, { signal }) : null;
    return { ref, label: job.name || job.id, href: `#/jobs/${job.id}`, run: job, curve, dataset: job.dataset_id };
  }
  const sweep = await getJSON(`/v1/sweeps/${encodeURIComponent(sweepId)}`, { signal });
  const trial = await getJSON(`/v1/sweeps/${sweepId}/trials/${Number(index)}?max_points=${POINTS}`, { signal });
  const label = `${sweep.name || sweep.id} #${trial.index}`;
  return { ref, label, href: `#/sweeps/${sweep.id}`, run: trial, curve: trial.result, dataset: sweep.dataset_id };
}

// The table's rows: what tells the runs apart first, then what they trained to.
function rows(runs) {
  const keys = [...new Set(runs.flatMap((r) => Object.keys(r.run.hyperparameters)))];
  const result = (k) => (r) => r.run.result?.[k];
  return [
    ["status", (r) => r.run.status],
    ["dataset", (r) => r.dataset],
    ...keys.map((k) => [k, (r) => r.run.hyperparameters[k]]),
    ...["final_loss", "initial_loss", "epochs_completed", "stopped_early", "training_seconds"].map((k) => [
      k,
      result(k),
    ]),
    ...PARAMETERS.map((p) => [p, (r) => r.run.result?.parameters[p]]),
  ];
}

function sideBySide(runs, onlyDiffering) {
  const body = h("tbody", { id: "compare-rows" });
  for (const [key, get] of rows(runs)) {
    const shown = runs.map((r) => valueText(get(r)));
    const differs = new Set(shown).size > 1;
    if (onlyDiffering && !differs) continue;
    body.append(
      h(
        "tr",
        { class: differs ? "differs" : null, "data-key": key },
        h("th", { scope: "row" }, key.replaceAll("_", " ")),
        shown.map((v, i) => h("td", { class: "num" }, key === "status" ? badge(get(runs[i])) : v)),
      ),
    );
  }
  const head = runs.map((r) => h("a", { href: r.href }, r.label));
  return table("Hyperparameters and results of the runs compared", ["", ...head], body, { id: "compare-table" });
}

export async function comparePage({ view, signal, id }) {
  const refs = id ? id.split(",").filter(Boolean) : picked();
  const title = heading("Compare");
  if (!refs.length) {
    view.replaceChildren(
      title,
      h("p", {}, "Tick runs in the lists of jobs or a sweep's leaderboard, then open Compare in the header."),
    );
    return title.focus();
  }
  const found = await Promise.all(
    refs.map((ref) =>
      load(ref, signal).catch((err) => {
        if (err instanceof ApiError && err.status === 404) return { ref, missing: true };
        throw err;
      }),
    ),
  );
  const runs = found.filter((r) => !r.missing);
  const missing = found.filter((r) => r.missing);
  const oneDataset = new Set(runs.map((r) => r.dataset)).size === 1;
  const lossBox = h("div", {
    id: "compare-loss",
    class: "chart",
    role: "img",
    "aria-label": "Loss curves of the runs",
  });
  const fitBox = h("div", {
    id: "compare-fit",
    class: "chart",
    role: "img",
    "aria-label": "Fitted curves of the runs",
  });
  const only = h("input", { type: "checkbox", id: "only-differing" });
  const tableBox = h("div", { class: "scroll" }, sideBySide(runs, false));
  only.addEventListener("change", () => tableBox.replaceChildren(sideBySide(runs, only.checked)));
  const address = `${location.origin}${location.pathname}#/compare/${refs.map(encodeURIComponent).join(",")}`;
  view.replaceChildren(
    title,
    h("p", {}, "A link that reopens this comparison: ", h("a", { id: "compare-address", href: address }, address)),
    ...missing.map((r) => h("p", { class: "error-text" }, `Not found for this key: ${r.ref}`)),
    h(
      "div",
      { class: "two" },
      section("compare-loss", "Training loss", null, lossBox),
      section("compare-fit", `Fitted curves over ${oneDataset ? "their" : "the first run's"} dataset`, null, fitBox),
    ),
    section("compare-table", "Side by side", h("label", {}, only, " Only rows that differ"), tableBox),
  );
  title.focus();
  const drawn = runs.filter((r) => r.curve);
  lossOverlay(
    lossBox,
    drawn.map((r) => ({ label: r.label, epochs: r.curve.epochs, loss: r.curve.loss_history })),
  );
  const fit = new FitChart(fitBox);
  fit.setCurves(runs.filter((r) => r.run.result).map((r) => ({ label: r.label, parameters: r.run.result.parameters })));
  if (runs.length) fit.setPoints(await getJSON(`/v1/datasets/${runs[0].dataset}/points?max_points=2000`, { signal }));
  for (const r of missing) unpick(r.ref);
  showLink();
  view.dataset.loaded = "true";
}
