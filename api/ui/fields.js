// Form fields built from the API's JSON Schema of the hyperparameters (GET /v1/hyperparameters):
// each with its default, bounds and the service's limits, as the service states them; and the
// API's 422s placed beside the field their loc names.
import { fmt, h } from "./dom.js";

const idOf = (loc) => `f-${loc.replaceAll(".", "-")}`;

// A field's label, input, hint and error line; the input is described by the hint and the error.
export function field(loc, label, input, hint) {
  const id = idOf(loc);
  input.id = id;
  input.dataset.loc = loc;
  input.setAttribute("aria-describedby", `${id}-hint ${id}-error`);
  const row = h(
    "div",
    { class: input.type === "checkbox" ? "field check" : "field" },
    h("label", { for: id }, label),
    input,
    h("span", { class: "hint", id: `${id}-hint` }, hint),
    h("span", { class: "field-error", id: `${id}-error`, "data-error-for": loc }),
  );
  return row;
}

// The bounds a schema states, in words: "> 0", "≥ 1, ≤ 1,000,000".
function bounds(s) {
  return [
    s.minimum != null && `≥ ${fmt(s.minimum)}`,
    s.exclusiveMinimum != null && `> ${fmt(s.exclusiveMinimum)}`,
    s.maximum != null && `≤ ${fmt(s.maximum)}`,
    s.exclusiveMaximum != null && `< ${fmt(s.exclusiveMaximum)}`,
  ].filter(Boolean);
}

// The schema without its null alternative, and whether null is allowed.
function nonNull(s, defs) {
  const options = s.anyOf || [s];
  const nullable = options.some((o) => o.type === "null");
  const one = { ...options.find((o) => o.type !== "null"), ...s, anyOf: undefined };
  return { schema: one.$ref ? { ...defs[one.$ref.split("/").pop()], ...one } : one, nullable };
}

function input(schema, value) {
  if (schema.enum)
    return h(
      "select",
      {},
      schema.enum.map((v) => h("option", { value: v, selected: v === value }, v)),
    );
  if (schema.type === "boolean") return h("input", { type: "checkbox", checked: value === true });
  const number = schema.type === "integer" || schema.type === "number";
  return h("input", {
    type: number ? "number" : "text",
    step: schema.type === "integer" ? 1 : number ? "any" : null,
    min: schema.minimum ?? schema.exclusiveMinimum,
    max: schema.maximum ?? schema.exclusiveMaximum,
    value: value ?? "",
    inputmode: number ? "decimal" : null,
  });
}

// The value an input holds: a number, a boolean, text; undefined when left empty. A number field
// holding what is not a number sends it as text: the service says what is wrong, as for any value.
export function inputValue(el) {
  if (el.type === "checkbox") return el.checked;
  if (el.type === "number" && el.validity.badInput) return "not a number";
  if (el.value.trim() === "") return undefined;
  if (el.type === "number") return Number(el.value);
  return el.value;
}

// One hyperparameter (or a sweep's halving, with no prefix): a scalar's field, or an object's
// fieldset (initial_parameters, early_stopping) with a checkbox that sends it, else null.
export function hyperparameter(key, s, defs, prefix, label = key.replaceAll("_", " ")) {
  const { schema, nullable } = nonNull(s, defs);
  const loc = prefix ? `${prefix}.${key}` : key;
  if (schema.type !== "object") {
    const told = [
      schema.default != null ? `default ${fmt(schema.default)}` : null,
      ...bounds(schema),
      s.description || schema.description,
    ];
    return field(loc, label, input(schema, schema.default), told.filter(Boolean).join("; "));
  }
  const use = h("input", { type: "checkbox", id: `${idOf(loc)}-set`, "data-object": loc });
  const inner = Object.entries(schema.properties).map(([k, sub]) => hyperparameter(k, sub, defs, loc));
  const body = h("div", { class: "fields", hidden: true }, inner);
  use.addEventListener("change", () => {
    body.hidden = !use.checked;
  });
  const help = nullable ? `not set: ${s.description || schema.description || "the service's default"}` : null;
  return h(
    "fieldset",
    { class: "object" },
    h("legend", {}, h("label", {}, use, ` Set ${label}`)),
    help ? h("p", { class: "hint" }, help) : null,
    h("span", { class: "field-error", "data-error-for": loc }),
    body,
  );
}

// Every hyperparameter of spec.json_schema as fields under loc `prefix`.
export function hyperparameterFields(spec, prefix = "hyperparameters") {
  const { properties, $defs = {} } = spec.json_schema;
  return Object.entries(properties).map(([k, s]) => hyperparameter(k, s, $defs, prefix));
}

// The JSON of the fields under loc `prefix` in form: objects whose checkbox is off are left out.
export function collect(form, prefix) {
  const out = {};
  const off = [...form.querySelectorAll("[data-object]")].filter((c) => !c.checked).map((c) => `${c.dataset.object}.`);
  for (const el of form.querySelectorAll(`[data-loc^="${prefix}."]`)) {
    const loc = el.dataset.loc;
    if (off.some((o) => loc.startsWith(o))) continue;
    const value = inputValue(el);
    if (value === undefined) continue;
    const path = loc.slice(prefix.length + 1).split(".");
    let at = out;
    for (const part of path.slice(0, -1)) at = at[part] ??= {};
    at[path.at(-1)] = value;
  }
  return out;
}

// The error line of the field whose loc is the longest prefix of loc (a field's own, or the
// fieldset's around it); null if none is.
function errorLine(form, loc) {
  const parts = loc.filter((p) => p !== "body").map(String);
  for (let n = parts.length; n > 0; n--) {
    const line = form.querySelector(`[data-error-for="${CSS.escape(parts.slice(0, n).join("."))}"]`);
    if (line) return line;
  }
  return null;
}

export function clearErrors(form) {
  for (const line of form.querySelectorAll("[data-error-for]")) line.textContent = "";
  for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
}

// A 422's detail beside the fields it names; what names no field is returned.
export function placeErrors(form, detail, where = (loc) => loc) {
  const left = [];
  for (const e of Array.isArray(detail) ? detail : [{ loc: [], msg: String(detail) }]) {
    const msg = e.msg.replace(/^Value error, /, "");
    const line = errorLine(form, where(e.loc || [], msg));
    if (!line) {
      left.push(msg);
      continue;
    }
    line.textContent = line.textContent ? `${line.textContent}; ${msg}` : msg;
    form.querySelector(`[data-loc="${CSS.escape(line.dataset.errorFor)}"]`)?.setAttribute("aria-invalid", "true");
  }
  return left;
}
