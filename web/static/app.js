// The categorizer's web page: plain JavaScript against the public API, no build step.
"use strict";

const FINAL = new Set(["succeeded", "failed", "cancelled"]);
const $ = (id) => document.getElementById(id);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// -- API key (only when the service requires one) ----------------------------------------
const KEY_STORE = "categorizer.api_key";
const apiKey = () => sessionStorage.getItem(KEY_STORE) || "";

function withKey(options = {}) {
  const headers = new Headers(options.headers || {});
  if (apiKey()) headers.set("X-API-Key", apiKey());
  return { ...options, headers };
}

if (window.CATEGORIZER_AUTH) {
  const input = $("api-key");
  input.value = apiKey();
  setStatus($("key-status"), apiKey() ? "A key is set for this tab." : "Enter your API key first.");
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY_STORE, input.value.trim());
    setStatus($("key-status"), "A key is set for this tab.");
  });
}

// fetch JSON; an RFC 9457 problem (or any error status) becomes an Error with its detail
async function api(url, options = {}) {
  const resp = await fetch(url, withKey(options));
  let body = null;
  try { body = await resp.json(); } catch (_) { /* not JSON */ }
  if (!resp.ok) {
    const detail = body && (body.detail || body.title);
    throw new Error(detail || `${resp.status} ${resp.statusText}`);
  }
  return { body, resp };
}

function setStatus(el, text, isError = false) {
  el.textContent = text;
  el.classList.toggle("error", isError);
}

// -- one product ------------------------------------------------------------------------
function showResult(result, job) {
  $("result-category").textContent = result.category;
  $("result-confidence").textContent = `${(result.confidence * 100).toFixed(1)} %`;
  $("result-review").hidden = !result.needs_review;
  $("result-model").textContent = result.model_version || job.model_version || "";
  const bars = $("result-bars");
  bars.replaceChildren();
  const entries = Object.entries(result.probabilities).sort((a, b) => b[1] - a[1]);
  for (const [category, p] of entries) {
    const li = document.createElement("li");
    li.dataset.category = category;
    if (category === result.category) li.classList.add("top");
    const name = document.createElement("span");
    name.textContent = category;
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.setAttribute("role", "meter");
    bar.setAttribute("aria-valuemin", "0");
    bar.setAttribute("aria-valuemax", "1");
    bar.setAttribute("aria-valuenow", String(p));
    bar.setAttribute("aria-label", category);
    const fill = document.createElement("span");
    fill.style.width = `${(p * 100).toFixed(1)}%`;
    bar.append(fill);
    const pct = document.createElement("span");
    pct.className = "pct";
    pct.textContent = `${(p * 100).toFixed(1)} %`;
    li.append(name, bar, pct);
    bars.append(li);
  }
  $("product-result").hidden = false;
}

$("product-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = $("product-text").value.trim();
  const status = $("product-status");
  if (!text) { setStatus(status, "Type a product first.", true); return; }
  $("product-submit").disabled = true;
  $("product-result").hidden = true;
  setStatus(status, "Categorizing…");
  try {
    const { body } = await api("/v1/jobs", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ products: [{ text }] }),
    });
    let job = body;
    while (!FINAL.has(job.status)) {
      ({ body: job } = await api(`/v1/jobs/${job.job_id}?wait=10`));
    }
    if (job.status !== "succeeded") throw new Error(job.error || `the job ${job.status}`);
    showResult(job.results[0], job);
    setStatus(status, "");
  } catch (err) {
    setStatus(status, `Could not categorize: ${err.message}`, true);
  } finally {
    $("product-submit").disabled = false;
  }
});

// -- a catalog --------------------------------------------------------------------------
function progressOf(cat) {
  const p = cat.progress || cat;
  const total = Number(p.total ?? cat.total ?? 0);
  const done = Number(p.done ?? cat.done ?? 0);
  return { done, total };
}

$("catalog-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const file = $("catalog-file").files[0];
  const status = $("catalog-status");
  if (!file) { setStatus(status, "Choose a CSV file first.", true); return; }
  $("catalog-submit").disabled = true;
  $("catalog-done").hidden = true;
  $("catalog-progress-box").hidden = false;
  const bar = $("catalog-progress");
  bar.removeAttribute("value"); // indeterminate while uploading
  setStatus(status, `Uploading ${file.name}…`);
  try {
    const { body, resp } = await api("/v1/catalogs", {
      method: "POST",
      headers: { "Content-Type": "text/csv" },
      body: file,
    });
    const id = body.catalog_id || body.id;
    const location = resp.headers.get("Location") || `/v1/catalogs/${id}`;
    let cat = body;
    setStatus(status, "Categorizing…");
    for (;;) {
      ({ body: cat } = await api(location));
      const { done, total } = progressOf(cat);
      if (total > 0) {
        bar.max = total;
        bar.value = done;
        $("catalog-progress-text").textContent = `${done} / ${total} rows`;
      }
      if (FINAL.has(cat.status)) break;
      await sleep(400);
    }
    if (cat.status !== "succeeded") throw new Error(cat.error || `the catalog ${cat.status}`);
    const { total } = progressOf(cat);
    bar.max = Math.max(total, 1);
    bar.value = bar.max;
    const link = $("catalog-download");
    if (link.href.startsWith("blob:")) URL.revokeObjectURL(link.href);
    const resultsUrl = `${location}/results?format=csv`;
    if (apiKey()) {
      // a plain link cannot send the key: fetch the results with it and link to the file
      const resp = await fetch(resultsUrl, withKey());
      if (!resp.ok) throw new Error(`the results could not be downloaded (${resp.status})`);
      link.href = URL.createObjectURL(await resp.blob());
    } else {
      link.href = resultsUrl; // streamed straight from the service
    }
    link.setAttribute("download", `${file.name.replace(/\.csv$/i, "")}-categorized.csv`);
    $("catalog-done").hidden = false;
    setStatus(status, "Done.");
  } catch (err) {
    setStatus(status, `Could not categorize the catalog: ${err.message}`, true);
  } finally {
    $("catalog-submit").disabled = false;
  }
});
