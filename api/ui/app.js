// The dashboard: the owner's jobs and sweeps, a job's live loss curve and fit, a sweep's results.
// Pages are routed by the URL's fragment (#/jobs/ID, #/sweeps/ID), which never reaches a server.
/* global uPlot */
import { ApiError, forgetKey, getJSON, getKey, request, setKey, sleep } from "./api.js";
import { COLORS, chart, fmt, heatmap, line, scatter, thinned } from "./charts.js";
import { readEvents } from "./sse.js";

const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
const PARAMETERS = ["w11", "w12", "b11", "b12", "w21", "w22", "b2"];
const SHOWN_EPOCHS = 5000; // the most loss entries drawn; more are thinned evenly
const PLOT_POINTS = 2000; // the most dataset points drawn

const view = document.getElementById("view");
const message = document.getElementById("message");
const keyForm = document.getElementById("key-form");
const keyInput = document.getElementById("key");
const forget = document.getElementById("forget");

// Elements from a tag, attributes and children; strings become text nodes, never markup.
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  el.append(
    ...children
      .flat()
      .filter((c) => c != null)
      .map((c) => (typeof c === "object" ? c : String(c))),
  );
  return el;
}

const when = (iso) => (iso ? new Date(iso).toLocaleString("en-GB", { dateStyle: "medium", timeStyle: "medium" }) : "—");
const badge = (status) => h("span", { class: `status ${status}`, "data-status": status }, status);
const name = (run) => run.name || run.id;

function progressBar(done, total, label) {
  return h(
    "span",
    { class: "progress" },
    h("progress", { value: done, max: Math.max(total, 1), "aria-label": label }),
    ` ${fmt(done)} / ${fmt(total)}`,
  );
}

function say(text, kind = "error") {
  message.className = kind;
  message.textContent = text;
}

// --- the key -----------------------------------------------------------------------------------

function askForKey(why) {
  view.replaceChildren();
  forget.hidden = true;
  keyForm.hidden = false;
  if (why) say(why);
  keyInput.value = "";
  keyInput.focus();
}

keyForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const key = keyInput.value.trim();
  if (!key) return say("Paste an API key first.");
  setKey(key);
  keyInput.value = "";
  route();
});

forget.addEventListener("click", () => {
  forgetKey();
  current?.abort();
  say("The key is forgotten in this tab.", "info");
  askForKey();
});

// --- routing -------------------------------------------------------------------------------

let current = null; // the page shown: aborting it stops its requests, streams and timers

async function route() {
  current?.abort();
  current = new AbortController();
  const { signal } = current;
  message.className = "";
  message.textContent = "";
  if (!getKey()) return askForKey();
  keyForm.hidden = true;
  forget.hidden = false;
  const [, kind, id] = location.hash.match(/^#\/(jobs|sweeps)\/([^/]+)$/) || [];
  const page = kind === "jobs" ? jobPage : kind === "sweeps" ? sweepPage : listPage;
  try {
    await page(signal, id && decodeURIComponent(id));
  } catch (err) {
    failed(err, signal, kind, id);
  }
}

// What a failed request shows: never the data of the page it was for.
function failed(err, signal, kind, id) {
  if (signal.aborted) return;
  if (err instanceof ApiError && err.status === 401) {
    forgetKey();
    current.abort();
    return askForKey("That API key was not accepted (401): it is missing, unknown or revoked. Paste a valid key.");
  }
  if (err instanceof ApiError && err.status === 404 && kind) {
    current.abort();
    const what = kind === "jobs" ? "job" : "sweep";
    view.replaceChildren(
      h("h1", { tabindex: -1 }, "Not found"),
      h("p", {}, h("a", { href: "#/" }, "Back to the list of jobs and sweeps")),
    );
    say(`Not found: no ${what} ${id} for this key.`);
    return;
  }
  if (err instanceof ApiError && err.status === 429)
    return say("Too many requests with this key; the page retries in a moment.");
  say(
    err instanceof ApiError ? `The service answered ${err.status}: ${err.message}` : `Request failed: ${err.message}`,
  );
}

function heading(text, status) {
  const title = h("h1", { tabindex: -1 }, text, " ", status ? badge(status) : null);
  document.title = `${text} · tinytrain`;
  return title;
}

// Runs a page's background loop; its failure shows as any request's does.
function background(signal, kind, id, task) {
  task().catch((err) => failed(err, signal, kind, id));
}

// --- jobs and sweeps -----------------------------------------------------------------------

function table(caption, columns, body) {
  return h(
    "table",
    {},
    h("caption", { class: "visually-hidden" }, caption),
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        columns.map((c) => h("th", { scope: "col" }, c)),
      ),
    ),
    body,
  );
}

function jobRow(job) {
  const p = job.progress;
  return h(
    "tr",
    { "data-id": job.id },
    h("th", { scope: "row" }, h("a", { href: `#/jobs/${job.id}` }, name(job))),
    h("td", {}, badge(job.status)),
    h("td", {}, progressBar(p.epochs_completed, p.epochs, `epochs of ${name(job)}`)),
    h("td", { class: "num" }, fmt(p.last_loss)),
    h("td", {}, when(job.created_at)),
  );
}

function sweepRow(sweep) {
  const t = sweep.trials;
  return h(
    "tr",
    { "data-id": sweep.id },
    h("th", { scope: "row" }, h("a", { href: `#/sweeps/${sweep.id}` }, name(sweep))),
    h("td", {}, badge(sweep.status)),
    h("td", {}, progressBar(sweep.progress.epochs_completed, sweep.progress.epochs, `epochs of ${name(sweep)}`)),
    h("td", { class: "num" }, `${fmt(t.succeeded)} / ${fmt(t.total)}`, t.failed ? ` (${fmt(t.failed)} failed)` : ""),
    h("td", { class: "num" }, sweep.best ? fmt(sweep.best.objective) : "—"),
    h("td", {}, when(sweep.created_at)),
  );
}

// New rows go above the ones shown (lists are newest first); a row shown gets its new cells but
// keeps its link, so a refresh never takes the keyboard focus away.
function upsert(body, rows, atEnd = false) {
  body.querySelector(".empty")?.remove();
  let anchor = atEnd ? null : body.firstElementChild;
  for (const row of rows) {
    const old = body.querySelector(`tr[data-id="${CSS.escape(row.dataset.id)}"]`);
    if (!old) {
      body.insertBefore(row, anchor);
      continue;
    }
    [...row.children].slice(1).forEach((cell, i) => old.children[i + 1].replaceWith(cell));
    anchor = old.nextElementSibling;
  }
}

function emptyRow(body, columns, text) {
  if (!body.children.length) body.append(h("tr", { class: "empty" }, h("td", { colspan: columns }, text)));
}

async function listPage(signal) {
  const jobs = h("tbody", { id: "jobs" });
  const sweeps = h("tbody", { id: "sweeps" });
  const more = { jobs: null, sweeps: null };
  const moreJobs = h("button", { type: "button", hidden: true }, "Show older jobs");
  const moreSweeps = h("button", { type: "button", hidden: true }, "Show older sweeps");
  const title = heading("Jobs and sweeps");
  view.replaceChildren(
    title,
    h(
      "section",
      { "aria-labelledby": "jobs-title" },
      h("h2", { id: "jobs-title" }, "Jobs"),
      table("Jobs, newest first", ["Job", "Status", "Epochs", "Last loss", "Created"], jobs),
      moreJobs,
    ),
    h(
      "section",
      { "aria-labelledby": "sweeps-title" },
      h("h2", { id: "sweeps-title" }, "Sweeps"),
      table(
        "Sweeps, newest first",
        ["Sweep", "Status", "Epochs", "Trials succeeded", "Best objective", "Created"],
        sweeps,
      ),
      moreSweeps,
    ),
  );
  title.focus();

  const sweepDetails = (items) => Promise.all(items.map((s) => getJSON(`/v1/sweeps/${s.id}`, { signal })));
  const pageOf = (what, cursor) => getJSON(`/v1/${what}?limit=20${cursor ? `&cursor=${cursor}` : ""}`, { signal });

  async function older(what) {
    const got = await pageOf(what, more[what]);
    more[what] = got.next_cursor;
    if (what === "jobs") upsert(jobs, got.items.map(jobRow), true);
    else upsert(sweeps, (await sweepDetails(got.items)).map(sweepRow), true);
    (what === "jobs" ? moreJobs : moreSweeps).hidden = !got.next_cursor;
  }
  moreJobs.addEventListener("click", () => older("jobs").catch((err) => failed(err, signal)));
  moreSweeps.addEventListener("click", () => older("sweeps").catch((err) => failed(err, signal)));

  for (let first = true; ; first = false) {
    const [jobPage_, sweepPage_] = await Promise.all([pageOf("jobs"), pageOf("sweeps")]);
    const details = await sweepDetails(sweepPage_.items);
    upsert(jobs, jobPage_.items.map(jobRow));
    upsert(sweeps, details.map(sweepRow));
    emptyRow(jobs, 5, "No jobs yet: POST /v1/jobs to start one.");
    emptyRow(sweeps, 6, "No sweeps yet: POST /v1/sweeps to start one.");
    if (first) {
      more.jobs = jobPage_.next_cursor;
      more.sweeps = sweepPage_.next_cursor;
      moreJobs.hidden = !more.jobs;
      moreSweeps.hidden = !more.sweeps;
    }
    view.dataset.loaded = "true";
    const active = [...jobPage_.items, ...sweepPage_.items].some((run) => !TERMINAL.has(run.status));
    await sleep(active ? 2000 : 10000, signal);
  }
}

// --- a job -----------------------------------------------------------------------------------

// The loss curves: every entry received is kept, at most SHOWN_EPOCHS of them drawn.
class LossChart {
  constructor(container, logToggle) {
    this.container = container;
    this.toggle = logToggle;
    this.epochs = [];
    this.loss = [];
    this.val = null;
    this.made = null;
    logToggle.addEventListener("change", () => this.redraw(true));
  }

  // Loss entries of epochs start+1..start+loss.length; what arrives again after a resumed
  // stream replaces what was there.
  add(start, loss, val, source) {
    while (this.epochs.length && this.epochs[this.epochs.length - 1] > start) {
      this.epochs.pop();
      this.loss.pop();
      this.val?.pop();
    }
    if (val && !this.val) this.val = this.epochs.map(() => null);
    loss.forEach((v, i) => {
      this.epochs.push(start + i + 1);
      this.loss.push(v);
      this.val?.push(val ? val[i] : null);
    });
    this.container.dataset.source = source;
    this.redraw();
  }

  set(epochs, loss, val, source) {
    Object.assign(this, { epochs, loss, val });
    this.container.dataset.source = source;
    this.redraw(true);
  }

  redraw(rebuild = false) {
    const n = this.epochs.length;
    this.container.dataset.points = n;
    this.container.setAttribute(
      "aria-label",
      `Loss by epoch: ${fmt(n)} epochs${n ? `, last ${fmt(this.loss[n - 1])}` : ""}`,
    );
    if (!n) return;
    const log = this.toggle.checked;
    this.container.dataset.scale = log ? "log" : "linear";
    const pick = thinned(n, SHOWN_EPOCHS);
    const take = (a) => (pick ? pick.map((i) => a[i]) : a.slice());
    // A log axis has no place for a loss of 0: drawn as a gap.
    const y = (a) => take(a).map((v) => (log && !(v > 0) ? null : v));
    const data = [take(this.epochs), y(this.loss), ...(this.val ? [y(this.val)] : [])];
    if (this.made && !rebuild && this.made.series.length === data.length) {
      this.made.setData(data);
      return;
    }
    this.made?.destroy();
    this.container.replaceChildren();
    this.made = chart(this.container, {
      xLabel: "epoch",
      yLabel: log ? "loss (log scale)" : "loss",
      logY: log,
      data,
      series: [
        line("training loss", COLORS[0]),
        ...(this.val ? [line("validation loss", COLORS[1], { dash: [6, 4] })] : []),
      ],
    });
  }
}

// The dataset's points and the network's curve over them.
class FitChart {
  constructor(container) {
    this.container = container;
    this.points = null;
    this.parameters = null;
  }

  setPoints({ x, y }) {
    const order = x.map((_, i) => i).sort((a, b) => x[a] - x[b]);
    this.points = [order.map((i) => x[i]), order.map((i) => y[i])];
    this.container.dataset.points = x.length;
    this.draw();
  }

  setParameters(parameters) {
    this.parameters = parameters;
    this.draw();
  }

  draw() {
    if (!this.points) return;
    const [px, py] = this.points;
    const tables = [[px, py]];
    const series = [scatter(`data (${fmt(px.length)} points)`, "#6b6b6b", 4)];
    if (this.parameters) {
      const lo = px[0];
      const hi = px[px.length - 1];
      const gx = Array.from({ length: 300 }, (_, i) => lo + ((hi - lo) * i) / 299);
      tables.push([gx, gx.map((x) => predict(this.parameters, x))]);
      series.push(line("network", COLORS[1], { width: 2.5 }));
      this.container.dataset.curve = "drawn";
    }
    this.made?.destroy();
    this.container.replaceChildren();
    const data = tables.length > 1 ? uPlot.join(tables) : tables[0];
    this.made = chart(this.container, { xLabel: "x", yLabel: "y", data, series });
  }
}

const sigmoid = (z) => 0.5 * (1 + Math.tanh(0.5 * z)); // no overflow for large |z|

function predict(p, x) {
  const y = p.w21 * sigmoid(p.w11 * x + p.b11) + p.w22 * sigmoid(p.w12 * x + p.b12) + p.b2;
  return Number.isFinite(y) ? y : null;
}

function hyperparameterList(hp) {
  const shown = [
    "learning_rate",
    "batch_size",
    "epochs",
    "seed",
    "shuffle",
    "drop_last",
    "validation_fraction",
    "dtype",
    "device",
  ];
  return h(
    "dl",
    { class: "facts" },
    shown.flatMap((k) => [h("dt", {}, k.replaceAll("_", " ")), h("dd", {}, fmt(hp[k]))]),
  );
}

async function jobPage(signal, id) {
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
  const fitNote = h("p", { class: "hint" }, "The network's curve is drawn once the job has a result.");
  const params = h("tbody", { id: "parameters" });
  const download = h("button", { type: "button", id: "download-plot", disabled: true }, "Download plot (SVG)");
  view.replaceChildren(
    title,
    summary,
    h(
      "div",
      { class: "two" },
      h(
        "section",
        { "aria-labelledby": "loss-title" },
        h(
          "div",
          { class: "section-head" },
          h("h2", { id: "loss-title" }, "Loss"),
          h("label", {}, logToggle, " Logarithmic loss axis"),
        ),
        lossBox,
      ),
      h(
        "section",
        { "aria-labelledby": "fit-title" },
        h("div", { class: "section-head" }, h("h2", { id: "fit-title" }, "Learned curve over the dataset")),
        fitBox,
        fitNote,
      ),
    ),
    h(
      "section",
      { "aria-labelledby": "params-title" },
      h("div", { class: "section-head" }, h("h2", { id: "params-title" }, "Parameters"), download),
      h(
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
        params,
      ),
    ),
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
      failed(err, signal);
    }
  });

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
    params.replaceChildren(
      h(
        "tr",
        {},
        PARAMETERS.map((k) =>
          h(
            "td",
            { class: "num", "data-name": k, title: r ? String(r.parameters[k]) : null },
            r ? fmt(r.parameters[k]) : "—",
          ),
        ),
        h("td", { class: "num" }, r ? fmt(r.initial_loss) : "—"),
        h("td", { class: "num" }, r ? fmt(r.final_loss) : "—"),
      ),
    );
    download.disabled = !r || !TERMINAL.has(job.status);
    fitNote.hidden = !download.disabled;
    if (r && TERMINAL.has(job.status)) {
      fit.setParameters(r.parameters);
      view.dataset.finished = "true";
    }
  }
  show(job);

  background(signal, "jobs", id, async () => {
    fit.setPoints(await getJSON(`/v1/datasets/${job.dataset_id}/points?max_points=${PLOT_POINTS}`, { signal }));
  });
  background(signal, "jobs", id, async () => {
    if (job.status === "succeeded") return loadResult();
    await follow();
  });

  async function loadResult() {
    const r = await getJSON(`/v1/jobs/${job.id}/result?max_points=${SHOWN_EPOCHS}`, { signal });
    losses.set(r.epochs, r.loss_history, r.validation_loss_history, "result");
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
          if (event.event === "progress") {
            losses.add(data.start, data.loss, data.validation_loss, "events");
            show({
              ...job,
              progress: {
                ...job.progress,
                epochs_completed: data.epochs_completed,
                last_loss: data.loss.at(-1) ?? job.progress.last_loss,
              },
            });
          } else if (event.event === "status") {
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

// --- a sweep -------------------------------------------------------------------------------

// The hyperparameters a sweep varies, in the order its request named them.
function sweptKeys(sweep) {
  if (sweep.grid) return Object.keys(sweep.grid).filter((k) => sweep.grid[k].length > 1);
  return Object.keys(sweep.random || {})
    .filter((k) => k !== "trials" && k !== "seed")
    .map((k) => k.replace(/_values$/, ""));
}

const valueText = (v) => (v !== null && typeof v === "object" ? JSON.stringify(v) : fmt(v));

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

// The objective over one or two swept hyperparameters: a heatmap for two (the best trial of
// each pair, over any other swept values), a line for one numeric, points for random draws.
function objectivePanel(box, sweep, trials, keys, axes) {
  const label = sweep.objective.replaceAll("_", " ");
  const ok = trials.filter((t) => t.objective != null && t.objective > 0);
  box.chart?.destroy();
  box.chart = null;
  box.replaceChildren();
  box.removeAttribute("role");
  box.dataset.kind = "";
  if (!keys.length) return box.append(h("p", {}, "This sweep varies no hyperparameter."));
  const numeric = (k) => trials.every((t) => typeof t.hyperparameters[k] === "number");
  if (sweep.grid && axes.length === 2) {
    const [rk, ck] = axes;
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
    return box.append(
      heatmap({ width: box.clientWidth || 600, rowLabel: rk, colLabel: ck, rows, cols, cells, valueLabel: label }),
    );
  }
  const key = axes[0];
  if (!numeric(key)) return box.append(h("p", {}, `${key} is not a number: see the leaderboard.`));
  const best = new Map();
  for (const t of ok) {
    const x = t.hyperparameters[key];
    if (!best.has(x) || t.objective < best.get(x)) best.set(x, t.objective);
  }
  const xs = [...best.keys()].sort((a, b) => a - b);
  if (!xs.length) return box.append(h("p", {}, "No trial has succeeded yet."));
  const logX = xs[0] > 0 && xs.at(-1) / xs[0] >= 100;
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
    logX,
    logY: true,
    data: [xs, xs.map((x) => best.get(x))],
    series: [drawn],
  });
}

function axisPicker(keys, axes, onChange) {
  if (keys.length < 2) return null;
  const select = (id, text, i) =>
    h(
      "label",
      {},
      `${text} `,
      h(
        "select",
        { id, onchange: (e) => ((axes[i] = e.target.value), onChange()) },
        keys.map((k) => h("option", { value: k, selected: axes[i] === k }, k)),
      ),
    );
  return h("div", { class: "controls" }, select("rows-key", "Rows", 0), select("cols-key", "Columns", 1));
}

async function sweepPage(signal, id) {
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
      h(
        "section",
        { "aria-labelledby": "curves-title" },
        h("div", { class: "section-head" }, h("h2", { id: "curves-title" }, "Loss curves of the best trials")),
        curvesBox,
      ),
    ),
    h(
      "section",
      { "aria-labelledby": "board-title" },
      h("h2", { id: "board-title" }, "Leaderboard"),
      table(`The best trials by ${objective}`, ["Rank", "Trial", ...keys, "Status", objective, "Epochs"], board),
    ),
  );
  title.focus();

  function show() {
    const t = sweep.trials;
    title.replaceChildren(`Sweep ${name(sweep)} `, badge(sweep.status));
    summary.replaceChildren(
      ...[
        progressBar(sweep.progress.epochs_completed, sweep.progress.epochs, "epochs completed, all trials"),
        h(
          "span",
          {},
          `trials: ${fmt(t.total)} (${["succeeded", "failed", "running", "queued", "cancelled"].map((k) => `${fmt(t[k])} ${k}`).join(", ")})`,
        ),
        h(
          "span",
          {},
          "best ",
          h("strong", {}, sweep.best ? `${fmt(sweep.best.objective)} (trial ${sweep.best.index})` : "—"),
        ),
        sweep.error ? h("span", { class: "error-text" }, `${sweep.error.code}: ${sweep.error.message}`) : null,
      ].filter(Boolean),
    );
  }

  async function leaderboard() {
    const top = (await getJSON(`/v1/sweeps/${sweep.id}/trials?order_by=objective&limit=10`, { signal })).items;
    board.replaceChildren(
      ...top.map((t, i) =>
        h(
          "tr",
          { "data-index": t.index },
          h("td", { class: "num" }, t.objective != null ? i + 1 : "—"),
          h("th", { scope: "row" }, `#${t.index}`),
          keys.map((k) => h("td", { class: "num" }, valueText(t.hyperparameters[k]))),
          h("td", {}, badge(t.status)),
          h("td", { class: "num" }, fmt(t.objective)),
          h("td", { class: "num" }, t.result ? fmt(t.result.epochs_completed) : "—"),
        ),
      ),
    );
    return top.filter((t) => t.objective != null).slice(0, 5);
  }

  async function curves(best) {
    const validation = sweep.objective === "final_validation_loss";
    const results = await Promise.all(
      best.map((t) => getJSON(`/v1/sweeps/${sweep.id}/trials/${t.index}?max_points=500`, { signal })),
    );
    const tables = results.map((t) => [
      t.result.epochs,
      validation ? t.result.validation_loss_history : t.result.loss_history,
    ]);
    curvesBox.chart?.destroy();
    curvesBox.chart = null;
    curvesBox.replaceChildren();
    curvesBox.dataset.series = tables.length;
    if (!tables.length) return curvesBox.append(h("p", { class: "wait" }, "No trial has succeeded yet."));
    const series = results.map((t, i) =>
      line(`#${t.index} ${keys.map((k) => `${k} ${valueText(t.hyperparameters[k])}`).join(", ")}`, COLORS[i]),
    );
    curvesBox.chart = chart(curvesBox, {
      xLabel: "epoch",
      yLabel: `${validation ? "validation loss" : "loss"} (log scale)`,
      logY: true,
      data: uPlot.join(tables),
      series,
    });
  }

  let ended = -1;
  let bestShown = "";
  for (;;) {
    show();
    const best = await leaderboard();
    const t = sweep.trials;
    const nowEnded = t.succeeded + t.failed + t.cancelled;
    if (nowEnded !== ended) {
      ended = nowEnded;
      trials = await allTrials(sweep.id, signal);
      redrawObjective();
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

window.addEventListener("hashchange", route);
route();
