// The dashboard's entry: the pasted key, and the page the URL's fragment names (#/jobs/ID,
// #/sweeps/ID, #/new-job, #/new-sweep, #/compare/REFS, #/webhooks, else the lists), which never
// reaches a server.
import { ApiError, forgetKey, getKey, setKey } from "./api.js";
import { comparePage } from "./compare.js";
import { h, say } from "./dom.js";
import { jobPage } from "./job.js";
import { listPage } from "./list.js";
import { newJobPage } from "./new-job.js";
import { newSweepPage } from "./new-sweep.js";
import { showLink } from "./picks.js";
import { sweepPage } from "./sweep.js";
import { webhooksPage } from "./webhooks.js";

const view = document.getElementById("view");
const message = document.getElementById("message");
const keyForm = document.getElementById("key-form");
const keyInput = document.getElementById("key");
const forget = document.getElementById("forget");

// Pages by the fragment's first part; those of one run need its id.
const PAGES = {
  jobs: jobPage,
  sweeps: sweepPage,
  "new-job": newJobPage,
  "new-sweep": newSweepPage,
  compare: comparePage,
  webhooks: webhooksPage,
};
const WHAT = { jobs: "job", sweeps: "sweep" };

function askForKey(why) {
  view.replaceChildren();
  forget.hidden = true;
  keyForm.hidden = false;
  if (why) say(why);
  keyInput.value = "";
  keyInput.focus();
}

keyForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const key = keyInput.value.trim();
  if (!key) return say("Paste an API key first.");
  setKey(key);
  keyInput.value = "";
  route();
});

forget.addEventListener("click", () => {
  forgetKey();
  current?.abort();
  say("The key is forgotten in this tab.", "info");
  askForKey();
});

let current = null; // the page shown: aborting it stops its requests, streams and timers

// What a failed request shows: never the data of the page it was for.
function failed(err, signal, kind, id) {
  if (signal.aborted) return;
  if (err instanceof ApiError && err.status === 401) {
    forgetKey();
    current.abort();
    return askForKey("That API key was not accepted (401): it is missing, unknown or revoked. Paste a valid key.");
  }
  if (err instanceof ApiError && err.status === 404 && WHAT[kind]) {
    current.abort();
    view.replaceChildren(
      h("h1", { tabindex: -1 }, "Not found"),
      h("p", {}, h("a", { href: "#/" }, "Back to the list of jobs and sweeps")),
    );
    return say(`Not found: no ${WHAT[kind]} ${id} for this key.`);
  }
  if (err instanceof ApiError && err.status === 429)
    return say("Too many requests with this key; the page retries in a moment.");
  say(
    err instanceof ApiError ? `The service answered ${err.status}: ${err.message}` : `Request failed: ${err.message}`,
  );
}

async function route() {
  current?.abort();
  current = new AbortController();
  const { signal } = current;
  message.className = "";
  message.textContent = "";
  if (!getKey()) return askForKey();
  keyForm.hidden = true;
  forget.hidden = false;
  showLink();
  const [, kind, raw] = location.hash.match(/^#\/([a-z-]+)(?:\/([^/]+))?$/) || [];
  const id = raw && decodeURIComponent(raw);
  const page = (WHAT[kind] && !id) || !PAGES[kind] ? listPage : PAGES[kind];
  const fail = (err) => failed(err, signal, kind, id);
  // A page's background loops fail as its first requests do.
  const background = (task) => task().catch(fail);
  try {
    await page({ view, signal, id, failed: fail, background });
  } catch (err) {
    fail(err);
  }
}

window.addEventListener("hashchange", route);
route();
