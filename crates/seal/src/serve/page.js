// The search page: sends the query to POST /search and shows the hits with their matched
// n-grams highlighted (stronger weight, stronger highlight) and the generated n-grams.
// Plain DOM code, no dependencies. `?q=...&k=...` in the address runs a search on load.
"use strict";

const $ = (id) => document.getElementById(id);

// Evidence spans count Unicode code points (Rust `char`s), not UTF-16 code units, so text is
// indexed as an array of code points (`Array.from`), never with `String.prototype.slice`.
function highlighted(text, spans, maxWeight) {
  const chars = Array.from(text);
  const weight = new Array(chars.length).fill(0);
  const label = new Array(chars.length).fill(null);
  for (const s of spans) {
    const end = Math.min(s.end, chars.length);
    for (let i = Math.max(0, s.start); i < end; i++) {
      if (s.weight > weight[i]) {
        weight[i] = s.weight;
        label[i] = s.ngram;
      }
    }
  }
  const out = document.createDocumentFragment();
  let i = 0;
  while (i < chars.length) {
    let j = i + 1;
    while (j < chars.length && weight[j] === weight[i] && label[j] === label[i]) j++;
    const piece = chars.slice(i, j).join("");
    if (weight[i] > 0) {
      const mark = document.createElement("mark");
      mark.textContent = piece;
      const strength = maxWeight > 0 ? weight[i] / maxWeight : 1;
      mark.style.setProperty("--a", (0.15 + 0.85 * strength).toFixed(3));
      mark.dataset.ngram = label[i];
      mark.dataset.weight = weight[i].toFixed(3);
      mark.title = `"${label[i]}" weight ${weight[i].toFixed(2)}`;
      out.append(mark);
    } else {
      out.append(document.createTextNode(piece));
    }
    i = j;
  }
  return out;
}

// The spans of one field of a hit, each with its n-gram's weight.
function spansOf(hit, field) {
  const spans = [];
  for (const e of hit.evidence || []) {
    for (const s of e.spans) {
      if (s.field === field) spans.push({ start: s.start, end: s.end, weight: e.weight, ngram: e.ngram });
    }
  }
  return spans;
}

function element(tag, className, text) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (text !== undefined) el.textContent = text;
  return el;
}

function render(answer, elapsedMs) {
  const results = $("results");
  results.replaceChildren();
  let maxWeight = 0;
  for (const hit of answer.hits) for (const e of hit.evidence || []) maxWeight = Math.max(maxWeight, e.weight);
  if (answer.hits.length === 0) results.append(element("p", "", "No passage matched."));
  for (const hit of answer.hits) {
    const card = element("article", "hit");
    card.dataset.id = hit.id;
    const h = element("h2", "title");
    h.append(highlighted(hit.title, spansOf(hit, "title"), maxWeight));
    card.append(h);
    card.append(element("p", "meta", `#${hit.rank} · ${hit.id} · score ${hit.score.toFixed(2)}`));
    const text = element("p", "text");
    text.append(highlighted(hit.text, spansOf(hit, "text"), maxWeight));
    card.append(text);
    const matched = (hit.evidence || []).filter((e) => e.contribution > 0).slice(0, 8);
    if (matched.length) {
      card.append(element("p", "matched",
        "matched: " + matched.map((e) => `"${e.ngram}" ${e.contribution.toFixed(2)}`).join(", ")));
    }
    results.append(card);
  }
  const list = $("ngrams");
  list.replaceChildren();
  const ngrams = (answer.ngrams || []).filter((n) => n.weight > 0).slice(0, 60);
  const top = ngrams.length ? ngrams[0].weight : 1;
  for (const n of ngrams) {
    const li = element("li");
    const bar = element("div", "bar");
    bar.style.width = `${Math.max(4, (100 * n.weight) / top).toFixed(1)}%`;
    bar.title = n.weight.toFixed(2);
    const label = element("div");
    label.append(element("span", "ngram", n.text), document.createTextNode(" "),
      element("span", "src", `${n.weight.toFixed(2)} · ${n.source} · ${n.count}`));
    li.append(bar, label);
    list.append(li);
  }
  $("ngrams-panel").hidden = ngrams.length === 0;
  const t = answer.timings;
  // The server's own time: the page's clock may be virtual (headless browsers).
  $("status").textContent =
    `${answer.hits.length} passages in ${answer.server.total_ms.toFixed(0)} ms ` +
    `(search ${t.total_ms.toFixed(0)} ms: body ${t.body_ms.toFixed(0)}, query n-grams ${t.query_ngrams_ms.toFixed(0)}, ` +
    `titles ${t.titles_ms.toFixed(0)}, scoring ${t.scoring_ms.toFixed(0)}; queue ${answer.server.queue_ms.toFixed(0)} ms; ` +
    `round trip ${elapsedMs.toFixed(0)} ms)`;
}

function showError(message) {
  const status = $("status");
  status.textContent = message;
  status.classList.add("error");
  $("results").replaceChildren();
}

async function search(query, k) {
  const status = $("status");
  status.classList.remove("error");
  status.textContent = "searching…";
  document.body.dataset.state = "searching";
  const button = document.querySelector("button");
  button.disabled = true;
  const started = performance.now();
  try {
    const response = await fetch("/search", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ query, k }),
    });
    const body = await response.json();
    if (!response.ok) {
      showError(`${response.status}: ${body.error}`);
      document.body.dataset.state = "error";
    } else {
      render(body, performance.now() - started);
      document.body.dataset.state = "done";
    }
  } catch (e) {
    showError(`the server did not answer: ${e}`);
    document.body.dataset.state = "error";
  } finally {
    button.disabled = false;
  }
}

$("search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const query = $("query").value;
  const k = Math.max(1, Math.min(100, parseInt($("k").value, 10) || 10));
  const url = new URL(window.location);
  url.searchParams.set("q", query);
  url.searchParams.set("k", String(k));
  history.replaceState(null, "", url);
  search(query, k);
});

const params = new URLSearchParams(window.location.search);
if (params.get("q")) {
  $("query").value = params.get("q");
  if (params.get("k")) $("k").value = params.get("k");
  $("search-form").requestSubmit();
}
