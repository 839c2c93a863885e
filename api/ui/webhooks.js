// The Webhooks page (read-only): the owner's endpoints and each one's recent deliveries,
// refreshed every few seconds. Endpoints are made and changed with the API, the CLI or the client.
import { getJSON, sleep } from "./api.js";
import { fmt, h, heading, section, table, when } from "./dom.js";

const RECENT = 10; // deliveries shown per endpoint

function deliveryRow(attempt) {
  const answer = attempt.http_status == null ? "—" : String(attempt.http_status);
  return h(
    "tr",
    { "data-delivery": attempt.delivery_id },
    h("td", {}, when(attempt.attempted_at)),
    h("td", {}, attempt.type),
    h("td", { class: "num" }, answer),
    h("td", { class: "num" }, fmt(attempt.duration_seconds)),
    h("td", {}, attempt.error || ""),
  );
}

function endpointSection(endpoint, attempts) {
  const state = endpoint.enabled ? "enabled" : `disabled: ${endpoint.disabled_reason}`;
  const rows = attempts.length
    ? attempts.map(deliveryRow)
    : [h("tr", { class: "empty" }, h("td", { colspan: 5 }, "No delivery yet."))];
  return section(
    `webhook-${endpoint.id}`,
    endpoint.url,
    null,
    h(
      "p",
      { class: "webhook", "data-id": endpoint.id },
      `${endpoint.id} · ${endpoint.events.join(", ")} · ${state} · created ${when(endpoint.created_at)}`,
      endpoint.description ? ` · ${endpoint.description}` : "",
    ),
    table(
      `Recent deliveries to ${endpoint.url}, newest first`,
      ["Attempted", "Event", "HTTP status", "Seconds", "Error"],
      h("tbody", {}, rows),
    ),
  );
}

export async function webhooksPage({ view, signal }) {
  const title = heading("Webhooks");
  view.replaceChildren(title);
  title.focus();
  for (;;) {
    const endpoints = (await getJSON("/v1/webhooks", { signal })).items;
    const logs = await Promise.all(
      endpoints.map((e) => getJSON(`/v1/webhooks/${e.id}/deliveries?limit=${RECENT}`, { signal })),
    );
    const shown = endpoints.length
      ? endpoints.map((e, i) => endpointSection(e, logs[i].items))
      : [h("p", { class: "empty" }, "No webhook endpoints yet: `tinytrain webhooks create URL` makes one.")];
    view.replaceChildren(title, ...shown);
    view.dataset.loaded = "true";
    await sleep(5000, signal);
  }
}
