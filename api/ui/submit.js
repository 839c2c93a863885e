// What the New job and New sweep pages share: the form's frame, its error summary, and sending
// it: the run's JSON to the API, its 422s beside their fields, the run's live page after a 202.
import { ApiError, getJSON, postJSON } from "./api.js";
import { h, heading } from "./dom.js";
import { clearErrors, field, placeErrors } from "./fields.js";

// The service's hyperparameters, defaults, bounds and limits (one request per page shown).
export const hyperparameterSpec = (signal) => getJSON("/v1/hyperparameters", { signal });

export function runForm(title, id, ...parts) {
  const summary = h("div", { class: "form-errors", id: `${id}-errors`, role: "alert", tabindex: -1, hidden: true });
  const name = field("name", "Name", h("input", { type: "text", maxlength: 200 }), "optional; shown in the lists");
  const submit = h("button", { type: "submit", id: `${id}-submit` }, "Start");
  // novalidate: the service judges every value, and its messages are the ones shown.
  const form = h("form", { id, novalidate: true }, summary, name, ...parts, h("p", {}, submit));
  return { title: heading(title), form, summary, submit };
}

// Sends body() to path when the form is submitted; errors beside their fields (where(loc, msg)
// may point a loc elsewhere), the rest in the summary; on success the run's page.
export function onSubmit({ form, summary, submit }, path, body, signal, where, failed) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    summary.hidden = true;
    submit.disabled = true;
    try {
      const data = await body();
      if (!data) return showSummary(summary, ["Fix the fields marked below."]);
      const run = await postJSON(path, data, { signal });
      location.hash = `#/${path.split("/").pop()}/${run.id}`;
    } catch (err) {
      if (!(err instanceof ApiError) || ![413, 422, 429].includes(err.status)) return failed(err);
      const left = err.status === 422 ? placeErrors(form, err.detail, where) : [err.message];
      showSummary(summary, left.length ? left : ["The service refused some values: see the fields marked below."]);
    } finally {
      submit.disabled = false;
    }
  });
}

function showSummary(summary, lines) {
  summary.replaceChildren(
    h("p", {}, "Nothing was started."),
    h(
      "ul",
      {},
      lines.map((l) => h("li", {}, l)),
    ),
  );
  summary.hidden = false;
  summary.focus();
}
