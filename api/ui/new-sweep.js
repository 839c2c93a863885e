// The New sweep page: data, the base hyperparameters, and what varies: a grid's values or random
// draws from ranges, for what the service lets a sweep vary (all read from the API).
import { dataSource } from "./data-source.js";
import { fmt, h } from "./dom.js";
import { collect, field, hyperparameter, hyperparameterFields, inputValue } from "./fields.js";
import { hyperparameterSpec, onSubmit, runForm } from "./submit.js";

// Values separated by commas, each read as JSON ("0.1, 1", "true, false", '{"patience": 5}'); a
// value that is not JSON goes as text, for the service to say what is wrong with it.
function values(text) {
  try {
    return JSON.parse(`[${text}]`);
  } catch {
    return text.split(",").map((t) => {
      try {
        return JSON.parse(t);
      } catch {
        return t.trim();
      }
    });
  }
}

const listInput = () => h("input", { type: "text", spellcheck: "false", "data-list": true });

function gridFields(spec) {
  return spec.sweepable.map((k) => field(`grid.${k}`, k.replaceAll("_", " "), listInput(), "values, comma-separated"));
}

function randomFields(spec) {
  const number = (attrs = {}) => h("input", { type: "number", step: "any", ...attrs });
  const ranges = Object.entries(spec.ranges).map(([k, kind]) =>
    h(
      "fieldset",
      { class: "range" },
      h("legend", {}, `${k.replaceAll("_", " ")} from a range`),
      field(`random.${k}.min`, "min", number(), ""),
      field(`random.${k}.max`, "max", number(), ""),
      kind === "float" ? field(`random.${k}.log`, "log-uniform", h("input", { type: "checkbox" }), "") : null,
      h("span", { class: "field-error", "data-error-for": `random.${k}` }),
    ),
  );
  const lists = spec.sweepable
    .filter((k) => !(k in spec.ranges))
    .map((k) =>
      field(`random.${k}_values`, `${k.replaceAll("_", " ")}: one of`, listInput(), "values, comma-separated"),
    );
  return [
    field("random.trials", "trials", number({ min: 1, max: spec.limits.max_trials, step: 1, value: 20 }), ""),
    field("random.seed", "seed of the draws", number({ min: 0, step: 1, value: 0 }), ""),
    ...ranges,
    ...lists,
  ];
}

// The grid or random part of the body from its fields: lists parsed, empty ranges left out.
function varied(form, mode) {
  const out = {};
  for (const el of form.querySelectorAll(`[data-loc^="${mode}."]`)) {
    const [, key, part] = el.dataset.loc.split(".");
    const value = el.dataset.list != null ? (el.value.trim() ? values(el.value) : undefined) : inputValue(el);
    if (value === undefined || (part === "log" && !form.querySelector(`[data-loc="random.${key}.min"]`).value))
      continue;
    if (part) out[key] = { ...out[key], [part]: value };
    else out[key] = value;
  }
  return out;
}

export async function newSweepPage({ view, signal, failed }) {
  const spec = await hyperparameterSpec(signal);
  const data = dataSource(signal);
  const base = h(
    "fieldset",
    { id: "hyperparameters" },
    h("legend", {}, "Base hyperparameters"),
    hyperparameterFields(spec),
  );
  const modes = ["grid", "random"].map((m) =>
    h(
      "label",
      { class: "choice" },
      h("input", { type: "radio", name: "mode", value: m, id: `mode-${m}`, checked: m === "grid" }),
      ` ${m}`,
    ),
  );
  const grid = h("div", { id: "grid-fields", class: "fields" }, gridFields(spec));
  const random = h("div", { id: "random-fields", class: "fields", hidden: true }, randomFields(spec));
  const objective = h(
    "select",
    {},
    h("option", { value: "" }, "the service's default: validation loss with a split, else training loss"),
    spec.objectives.map((o) => h("option", { value: o }, o)),
  );
  const count = h("p", { class: "hint", id: "trial-count", "aria-live": "polite" });
  const search = h(
    "fieldset",
    { id: "search" },
    h("legend", {}, "What varies"),
    h("div", { class: "choices" }, modes),
    grid,
    random,
    count,
    field("objective", "Objective", objective, "the smaller the better"),
  );
  const halving = hyperparameter("halving", spec.halving, {}, null, "successive halving");
  halving.id = "halving";
  halving
    .querySelector("legend")
    .after(
      h(
        "p",
        { class: "hint" },
        "optional: each trial trains to min epochs; at each rung the best 1/reduction factor go on, " +
          "up to the base's epochs (brackets > 1: Hyperband)",
      ),
    );
  const form = runForm("New sweep", "new-sweep", data.fieldset, base, search, halving);
  view.replaceChildren(form.title, form.form);
  form.title.focus();
  const mode = () => search.querySelector("input[name=mode]:checked").value;
  const recount = () => {
    grid.hidden = mode() !== "grid";
    random.hidden = mode() !== "random";
    const spread = varied(form.form, mode());
    const n = mode() === "grid" ? Object.values(spread).reduce((a, v) => a * v.length, 1) : spread.trials || 0;
    count.textContent = `${fmt(n)} trials (this service runs at most ${fmt(spec.limits.max_trials)} in one sweep)`;
  };
  search.addEventListener("input", recount);
  search.addEventListener("change", recount);
  recount();

  const body = async () => {
    const dataset = await data.body();
    const name = form.form.querySelector("[data-loc=name]").value.trim();
    const halvingSet = collect(form.form, "halving"); // empty while its checkbox is off
    return (
      dataset && {
        ...dataset,
        hyperparameters: collect(form.form, "hyperparameters"),
        [mode()]: varied(form.form, mode()),
        objective: objective.value || null,
        halving: Object.keys(halvingSet).length ? halvingSet : null,
        name: name || null,
      }
    );
  };
  // A sweep's value errors name the key in their message (loc body or body.random), a trial's
  // its field (body.trials.K.FIELD): both go beside the field that set the value.
  const where = (loc, msg) => {
    const tail = loc.filter((p) => p !== "body");
    const key = tail[0] === "trials" ? tail.at(-1) : msg.match(/^(\w+):/)?.[1];
    if (!key || (tail.length > 1 && tail[0] !== "trials")) return loc;
    const sent = varied(form.form, mode());
    if (key in sent) return [mode(), key];
    if (`${key}_values` in sent) return [mode(), `${key}_values`];
    return ["hyperparameters", key];
  };
  onSubmit(form, "/v1/sweeps", body, signal, where, failed);
  view.dataset.loaded = "true";
}
