// A job's page: its loss curve drawing live from the events stream, the network's curve over the
// dataset's points (moving with the parameters progress events carry), the seven parameters.
import { ApiError, getJSON, request, sleep } from "./api.js";
import { badge, fmt, h, heading, name, progressBar, section, TERMINAL, valueText, when } from "./dom.js";
import { PARAMETERS } from "./network.js";
import { FitChart, LossChart } from "./plots.js";
import { readEvents } from "./sse.js";

const PLOT_POINTS = 2000; // the most dataset points drawn

function parameterTable(body) {
  return h(
    "table",
    { class: "params" },
    h("caption", { class: "visually-hidden" }, "The seven learned parameters"),
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        PARAMETERS.map((p) => h("th", { scope: "col" }, p)),
        h("th", { scope: "col" }, "initial loss"),
        h("th", { scope: "col" }, "final loss"),
      ),
    ),
    body,
  );
}

// The hyperparameters as the API resolved them, in its order.
export const hyperparameterList = (hp) =>
  h(
    "dl",
    { class: "facts" },
    Object.entries(hp).flatMap(([k, v]) => [h("dt", {}, k.replaceAll("_", " ")), h("dd", {}, valueText(v))]),
  );

export async function jobPage({ view, signal, id, failed, background }) {
  let job = await getJSON(`/v1/jobs/${encodeURIComponent(id)}`, { signal });
  const title = heading(`Job ${name(job)}`, job.status);
  const summary = h("div", { class: "summary", "aria-live": "polite" });
  const logToggle = h("input", { type: "checkbox", id: "log-scale", checked: true });
  const lossBox = h(
    "div",
    { id: "loss-chart", class: "chart", role: "img", "data-points": 0 },
    h("p", { class: "wait" }, "Waiting for the first epoch…"),
  );
  const fitBox = h(
    "div",
    { id: "fit-chart", class: "chart", role: "img", "aria-label": "The dataset's points and the learned curve" },
    h("p", { class: "wait" }, "Loading the dataset's points…"),
  );
  const fitNote = h("p", { class: "hint" }, "The network's curve is drawn once the job has parameters.");
  const params = h("tbody", { id: "parameters" });
  const download = h("button", { type: "button", id: "download-plot", disabled: true }, "Download plot (SVG)");
  view.replaceChildren(
    title,
    summary,
    h(
      "div",
      { class: "two" },
      section("loss", "Loss", h("label", {}, logToggle, " Logarithmic loss axis"), lossBox),
      section("fit", "Learned curve over the dataset", null, fitBox, fitNote),
    ),
    section("params", "Parameters", download, parameterTable(params)),
    h("details", {}, h("summary", {}, "Hyperparameters"), hyperparameterList(job.hyperparameters)),
  );
  title.focus();
  const losses = new LossChart(lossBox, logToggle);
  const fit = new FitChart(fitBox);

  download.addEventListener("click", async () => {
    try {
      const blob = await (await request(`/v1/jobs/${job.id}/plot.svg`, { signal })).blob();
      const url = URL.createObjectURL(blob);
      h("a", { href: url, download: `${job.id}.svg` }).click();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (err) {
      failed(err);
    }
  });

  // The seven parameters in the table and as the fitted curve: the result's, or a progress
  // event's while the job trains (live).
  function showParameters(p, initial, final, live) {
    params.replaceChildren(
      h(
        "tr",
        { "data-live": live || null },
        PARAMETERS.map((k) =>
          h("td", { class: "num", "data-name": k, title: p ? String(p[k]) : null }, p ? fmt(p[k]) : "—"),
        ),
        h("td", { class: "num" }, fmt(initial)),
        h("td", { class: "num" }, fmt(final)),
      ),
    );
    fitNote.hidden = Boolean(p);
    if (p) fit.setCurves([{ label: live ? "network (training)" : "network", parameters: p }]);
  }

  function show(now) {
    job = now;
    const p = job.progress;
    title.replaceChildren(`Job ${name(job)} `, badge(job.status));
    summary.replaceChildren(
      ...[
        progressBar(p.epochs_completed, p.epochs, "epochs completed"),
        h("span", {}, "last loss ", h("strong", { id: "last-loss" }, fmt(p.last_loss))),
        h("span", {}, `device ${job.device || "—"}`),
        h("span", {}, `created ${when(job.created_at)}`),
        job.error ? h("span", { class: "error-text" }, `${job.error.code}: ${job.error.message}`) : null,
      ].filter(Boolean),
    );
    const r = job.result;
    const ended = TERMINAL.has(job.status);
    download.disabled = !r || !ended;
    if (r || ended) showParameters(r?.parameters, r?.initial_loss, r?.final_loss, false);
    if (ended) view.dataset.finished = "true";
  }
  show(job);
  if (!job.result) showParameters(null);

  background(async () => {
    fit.setPoints(await getJSON(`/v1/datasets/${job.dataset_id}/points?max_points=${PLOT_POINTS}`, { signal }));
  });
  background(async () => {
    if (job.status === "succeeded") return loadResult();
    await follow();
  });

  async function loadResult() {
    const r = await getJSON(`/v1/jobs/${job.id}/result?max_points=5000`, { signal });
    losses.set(r.epochs, r.loss_history, r.validation_loss_history, "result");
  }

  function progress(data) {
    losses.add(data.start, data.loss, data.validation_loss, "events");
    const last = data.loss.at(-1) ?? job.progress.last_loss;
    show({ ...job, progress: { ...job.progress, epochs_completed: data.epochs_completed, last_loss: last } });
    if (data.parameters && !job.result) showParameters(data.parameters, null, last, true);
  }

  // The live curve from GET /events, resumed from the last epoch received when the connection drops.
  async function follow() {
    let last = null;
    for (let retries = 0; retries < 20; retries++) {
      try {
        const headers = { Accept: "text/event-stream", ...(last != null ? { "Last-Event-ID": last } : {}) };
        const response = await request(`/v1/jobs/${job.id}/events`, { signal, headers });
        for await (const event of readEvents(response)) {
          retries = 0;
          if (event.id != null) last = event.id;
          const data = JSON.parse(event.data);
          if (event.event === "progress") progress(data);
          else if (event.event === "status") {
            show(data);
            if (TERMINAL.has(data.status)) return;
          }
        }
      } catch (err) {
        if (signal.aborted || err instanceof ApiError) throw err; // a wrong key, a job deleted meanwhile
      }
      await sleep(1000, signal);
    }
  }
}
