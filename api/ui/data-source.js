// Where a new run's points come from: a CSV file (chosen, or dropped on its field), CSV text
// pasted, or a stored dataset. CSV is parsed by the service (POST /v1/datasets/parse), which
// stores nothing and names the line at fault; the run is then sent with the points inline.
import { ApiError, getJSON, request } from "./api.js";
import { fmt, h } from "./dom.js";
import { field } from "./fields.js";

const SOURCES = [
  ["file", "A CSV file"],
  ["paste", "Points pasted as CSV"],
  ["stored", "A stored dataset"],
];

async function parsed(body, signal) {
  const response = await request("/v1/datasets/parse", {
    method: "POST",
    headers: { "Content-Type": "text/csv" },
    body,
    signal,
  });
  return response.json();
}

// What the service found wrong with a CSV body (a 4xx), as text; anything else is thrown on.
function problem(err) {
  if (!(err instanceof ApiError) || err.status === 401 || err.status === 429 || err.status >= 500) throw err;
  return Array.isArray(err.detail) ? err.detail.map((e) => e.msg).join("; ") : err.message;
}

const said = (points) =>
  `${fmt(points.x.length)} points, x from ${fmt(Math.min(...points.x))} to ${fmt(Math.max(...points.x))}`;

export function dataSource(signal) {
  const file = h("input", { type: "file", accept: ".csv,text/csv,text/plain" });
  const text = h("textarea", { rows: 6, cols: 40, spellcheck: "false", placeholder: "x,y\n-1,0.2\n0,0.5\n1,0.8" });
  const stored = h("select", {}, h("option", { value: "" }, "Loading the stored datasets…"));
  const rows = {
    file: field("dataset.file", "CSV file (or drop one here)", file, "x,y per line; a header line may come first"),
    paste: field("dataset.paste", "CSV points", text, "x,y per line, as in a CSV file"),
    stored: field("dataset_id", "Stored dataset", stored, ""),
  };
  const status = h("p", { class: "hint", id: "data-status", "aria-live": "polite" });
  const radios = SOURCES.map(([value, label]) =>
    h(
      "label",
      { class: "choice" },
      h("input", { type: "radio", name: "source", value, id: `source-${value}`, checked: value === "file" }),
      ` ${label}`,
    ),
  );
  const fieldset = h(
    "fieldset",
    { id: "data" },
    h("legend", {}, "Data"),
    h("div", { class: "choices" }, radios),
    Object.values(rows),
    h("span", { class: "field-error", "data-error-for": "dataset" }),
  );
  rows.file.append(status);
  const chosen = () => fieldset.querySelector("input[name=source]:checked").value;
  const show = () => {
    for (const [k, row] of Object.entries(rows)) row.hidden = k !== chosen();
  };
  fieldset.addEventListener("change", (e) => e.target.name === "source" && show());
  show();

  let points = null; // the file's points once the service parsed them
  const errorLine = rows.file.querySelector(".field-error");
  async function check() {
    points = null;
    errorLine.textContent = "";
    file.removeAttribute("aria-invalid");
    status.textContent = "";
    if (!file.files.length) return;
    try {
      points = await parsed(file.files[0], signal);
      status.textContent = `${file.files[0].name}: ${said(points)}`;
    } catch (err) {
      errorLine.textContent = `${file.files[0].name}: ${problem(err)}`;
      file.setAttribute("aria-invalid", "true");
    }
  }
  let checking = Promise.resolve(); // the check of the file chosen last
  file.addEventListener("change", () => {
    checking = check();
  });
  rows.file.addEventListener("dragover", (e) => e.preventDefault());
  rows.file.addEventListener("drop", (e) => {
    e.preventDefault();
    if (!e.dataTransfer.files.length) return;
    file.files = e.dataTransfer.files;
    file.dispatchEvent(new Event("change", { bubbles: true }));
  });

  getJSON("/v1/datasets?limit=100", { signal })
    .then((page) => {
      stored.replaceChildren(
        ...(page.items.length ? [] : [h("option", { value: "" }, "No stored dataset yet")]),
        ...page.items.map((d) => h("option", { value: d.id }, `${d.name || d.id} (${fmt(d.n_points)} points)`)),
      );
    })
    .catch((err) => {
      if (!signal.aborted) stored.replaceChildren(h("option", { value: "" }, `Not listed: ${err.message}`));
    });

  // The body's dataset or dataset_id; null (the reason beside its field) when there is none.
  async function body() {
    const source = chosen();
    if (source === "stored") return stored.value ? { dataset_id: stored.value } : null;
    if (source === "file") {
      await checking;
      if (!points) await check(); // its message again, cleared with the form's others
      if (!file.files.length) errorLine.textContent = "Choose a CSV file.";
      return points && { dataset: points };
    }
    try {
      return { dataset: await parsed(text.value, signal) };
    } catch (err) {
      rows.paste.querySelector(".field-error").textContent = problem(err);
      text.setAttribute("aria-invalid", "true");
      return null;
    }
  }
  return { fieldset, body };
}
