// The front page: the owner's jobs and sweeps, newest first, refreshed while any of them runs.
import { getJSON, sleep } from "./api.js";
import { badge, fmt, h, heading, name, progressBar, section, TERMINAL, table, when } from "./dom.js";
import { pickBox } from "./picks.js";

function jobRow(job) {
  const p = job.progress;
  return h(
    "tr",
    { "data-id": job.id },
    h("th", { scope: "row" }, pickBox(job.id, name(job)), " ", h("a", { href: `#/jobs/${job.id}` }, name(job))),
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
// keeps its first, so a refresh never takes the keyboard focus away.
function upsert(body, rows, atEnd = false) {
  body.querySelector(".empty")?.remove();
  let anchor = atEnd ? null : body.firstElementChild;
  for (const row of rows) {
    const old = body.querySelector(`tr[data-id="${CSS.escape(row.dataset.id)}"]`);
    if (!old) {
      body.insertBefore(row, anchor);
      continue;
    }
    [...row.children].slice(1).forEach((cell, i) => {
      old.children[i + 1].replaceWith(cell);
    });
    anchor = old.nextElementSibling;
  }
}

function emptyRow(body, columns, text) {
  if (!body.children.length) body.append(h("tr", { class: "empty" }, h("td", { colspan: columns }, text)));
}

// One list (jobs or sweeps): its rows, and the button that shows older ones.
function listing(what, signal, failed) {
  const body = h("tbody", { id: what });
  const more = h("button", { type: "button", hidden: true }, `Show older ${what}`);
  const rows = async (items) =>
    what === "jobs"
      ? items.map(jobRow)
      : (await Promise.all(items.map((s) => getJSON(`/v1/sweeps/${s.id}`, { signal })))).map(sweepRow);
  const pageOf = (cursor) => getJSON(`/v1/${what}?limit=20${cursor ? `&cursor=${cursor}` : ""}`, { signal });
  let cursor = null;
  more.addEventListener("click", async () => {
    try {
      const got = await pageOf(cursor);
      cursor = got.next_cursor;
      upsert(body, await rows(got.items), true);
      more.hidden = !cursor;
    } catch (err) {
      failed(err);
    }
  });
  // The newest page again; the first time, where the older ones start.
  async function refresh(first) {
    const got = await pageOf();
    upsert(body, await rows(got.items));
    emptyRow(body, what === "jobs" ? 5 : 6, `No ${what} yet.`);
    if (first) {
      cursor = got.next_cursor;
      more.hidden = !cursor;
    }
    return got.items.some((run) => !TERMINAL.has(run.status));
  }
  return { body, more, refresh };
}

export async function listPage({ view, signal, failed }) {
  const jobs = listing("jobs", signal, failed);
  const sweeps = listing("sweeps", signal, failed);
  const title = heading("Jobs and sweeps");
  view.replaceChildren(
    title,
    section(
      "jobs",
      "Jobs",
      h("a", { href: "#/new-job", class: "button" }, "New job"),
      table("Jobs, newest first", ["Job", "Status", "Epochs", "Last loss", "Created"], jobs.body),
      jobs.more,
    ),
    section(
      "sweeps",
      "Sweeps",
      h("a", { href: "#/new-sweep", class: "button" }, "New sweep"),
      table(
        "Sweeps, newest first",
        ["Sweep", "Status", "Epochs", "Trials succeeded", "Best objective", "Created"],
        sweeps.body,
      ),
      sweeps.more,
    ),
  );
  title.focus();
  for (let first = true; ; first = false) {
    const active = await Promise.all([jobs.refresh(first), sweeps.refresh(first)]);
    view.dataset.loaded = "true";
    await sleep(active.some(Boolean) ? 2000 : 10000, signal);
  }
}
