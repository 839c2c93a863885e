// The New job page: data, every hyperparameter the service takes (from the API), and submit.
import { dataSource } from "./data-source.js";
import { h } from "./dom.js";
import { collect, hyperparameterFields } from "./fields.js";
import { hyperparameterSpec, onSubmit, runForm } from "./submit.js";

export async function newJobPage({ view, signal, failed }) {
  const spec = await hyperparameterSpec(signal);
  const data = dataSource(signal);
  const hp = h("fieldset", { id: "hyperparameters" }, h("legend", {}, "Hyperparameters"), hyperparameterFields(spec));
  const form = runForm("New job", "new-job", data.fieldset, hp);
  view.replaceChildren(form.title, form.form);
  form.title.focus();
  const body = async () => {
    const dataset = await data.body();
    const name = form.form.querySelector("[data-loc=name]").value.trim();
    return dataset && { ...dataset, hyperparameters: collect(form.form, "hyperparameters"), name: name || null };
  };
  onSubmit(form, "/v1/jobs", body, signal, undefined, failed);
  view.dataset.loaded = "true";
}
