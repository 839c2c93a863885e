// The API key and the requests that carry it.
//
// The key lives in this tab's sessionStorage only: never in a URL (logs, history, Referer) or a
// cookie (sent without being asked). Every request sends it as an Authorization header.

const KEY = "tinytrain.key";

export const getKey = () => sessionStorage.getItem(KEY);
export const setKey = (key) => sessionStorage.setItem(KEY, key);
export const forgetKey = () => sessionStorage.removeItem(KEY);

// detail: the answer's "detail" as sent (a 422's list of {loc, msg, type}), message its text.
export class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === "string" ? detail : JSON.stringify(detail));
    this.status = status;
    this.detail = detail;
  }
}

export const sleep = (ms, signal) =>
  new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    const abort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal?.addEventListener("abort", abort, { once: true });
  });

// The fetch Response of an API path, or an ApiError for any status but 2xx. Over the key's rate
// limit (429) it waits as Retry-After says and tries again, a few times, before giving up.
export async function request(path, { signal, headers = {}, method = "GET", body } = {}) {
  const key = getKey();
  if (!key) throw new ApiError(401, "no API key");
  let response;
  for (let tries = 0; ; tries++) {
    response = await fetch(path, {
      headers: { Authorization: `Bearer ${key}`, ...headers },
      method,
      body,
      signal,
      cache: "no-store",
    });
    if (response.status !== 429 || tries === 4 || method !== "GET") break; // a POST is not sent twice
    await sleep(1000 * Math.min(10, Number(response.headers.get("Retry-After")) || 1), signal);
  }
  if (!response.ok) {
    let detail = response.statusText;
    try {
      detail = (await response.json()).detail ?? detail;
    } catch {
      // not JSON: the status text says enough
    }
    throw new ApiError(response.status, detail);
  }
  return response;
}

export async function getJSON(path, options) {
  return (await request(path, options)).json();
}

// POST a JSON body; the answer's JSON.
export async function postJSON(path, data, options = {}) {
  const headers = { "Content-Type": "application/json" };
  return (await request(path, { ...options, method: "POST", headers, body: JSON.stringify(data) })).json();
}
