// The API key and the requests that carry it.
//
// The key lives in this tab's sessionStorage only: never in a URL (logs, history, Referer) or a
// cookie (sent without being asked). Every request sends it as an Authorization header.

const KEY = "tinytrain.key";

export const getKey = () => sessionStorage.getItem(KEY);
export const setKey = (key) => sessionStorage.setItem(KEY, key);
export const forgetKey = () => sessionStorage.removeItem(KEY);

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
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
export async function request(path, { signal, headers = {} } = {}) {
  const key = getKey();
  if (!key) throw new ApiError(401, "no API key");
  let response;
  for (let tries = 0; ; tries++) {
    response = await fetch(path, {
      headers: { Authorization: `Bearer ${key}`, ...headers },
      signal,
      cache: "no-store",
    });
    if (response.status !== 429 || tries === 4) break;
    await sleep(1000 * Math.min(10, Number(response.headers.get("Retry-After")) || 1), signal);
  }
  if (!response.ok) {
    let detail = response.statusText;
    try {
      const body = await response.json();
      detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
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
