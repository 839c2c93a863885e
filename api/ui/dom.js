// What every page builds its elements with: h(), numbers and times as text, status badges,
// tables, the page heading and the message line.

const message = document.getElementById("message");

// Elements from a tag, attributes and children; strings become text nodes, never markup.
export function h(tag, attrs = {}, ...children) {
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

// A number in at most four significant digits, exponent form when very large or small.
export function fmt(v) {
  if (v == null || Number.isNaN(v)) return "—";
  if (typeof v !== "number") return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(3).replace(/\.?0+e/, "e");
  return Number.isInteger(v) ? v.toLocaleString("en") : String(Number(v.toPrecision(4)));
}

// A hyperparameter's value as text: objects (early_stopping, initial_parameters) as JSON.
export const valueText = (v) => (v !== null && typeof v === "object" ? JSON.stringify(v) : fmt(v));

export const when = (iso) =>
  iso ? new Date(iso).toLocaleString("en-GB", { dateStyle: "medium", timeStyle: "medium" }) : "—";
export const badge = (status) => h("span", { class: `status ${status}`, "data-status": status }, status);
export const name = (run) => run.name || run.id;
export const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);

export function progressBar(done, total, label) {
  return h(
    "span",
    { class: "progress" },
    h("progress", { value: done, max: Math.max(total, 1), "aria-label": label }),
    ` ${fmt(done)} / ${fmt(total)}`,
  );
}

export function say(text, kind = "error") {
  message.className = kind;
  message.textContent = text;
}

export function heading(text, status) {
  const title = h("h1", { tabindex: -1 }, text, " ", status ? badge(status) : null);
  document.title = `${text} · tinytrain`;
  return title;
}

export function table(caption, columns, body, attrs = {}) {
  return h(
    "table",
    attrs,
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

// A titled section: a heading (with controls beside it) over its content.
export function section(id, title, controls, ...content) {
  return h(
    "section",
    { "aria-labelledby": `${id}-title` },
    h("div", { class: "section-head" }, h("h2", { id: `${id}-title` }, title), controls),
    ...content,
  );
}
