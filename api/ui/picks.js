// The runs picked for comparison (job ids, and sweep trials as SWEEP_ID:INDEX), kept in this
// tab's session storage while the person moves between pages; the header's link opens them.
import { h } from "./dom.js";

const KEY = "tinytrain.compare";
const link = document.getElementById("compare-link");

export const picked = () => JSON.parse(sessionStorage.getItem(KEY) || "[]");

function store(refs) {
  sessionStorage.setItem(KEY, JSON.stringify(refs));
  showLink();
}

export function showLink() {
  const refs = picked();
  link.href = refs.length ? `#/compare/${refs.map(encodeURIComponent).join(",")}` : "#/compare";
  link.textContent = `Compare (${refs.length})`;
}

export const unpick = (ref) => store(picked().filter((r) => r !== ref));

// A checkbox that picks ref (or drops it), labelled for a screen reader as "Compare LABEL".
export function pickBox(ref, label) {
  return h("input", {
    type: "checkbox",
    class: "pick",
    "data-ref": ref,
    "aria-label": `Compare ${label}`,
    checked: picked().includes(ref),
    onchange: (e) => store(e.target.checked ? [...new Set([...picked(), ref])] : picked().filter((r) => r !== ref)),
  });
}
