// lexret serve: the search page. Plain JavaScript, no dependencies.
"use strict";

const K = 30;            // hits per search
const TERMS_SHOWN = 6;   // matched terms shown per hit
const $ = (id) => document.getElementById(id);

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function renderQuery(terms) {
  const list = $("query-terms");
  list.replaceChildren();
  for (const [term, weight] of Object.entries(terms)) {
    const li = el("li", "qterm");
    li.append(el("b", null, term), document.createTextNode(String(weight)));
    list.append(li);
  }
  $("query").hidden = Object.keys(terms).length === 0;
}

function renderHit(hit) {
  const card = el("article", "hit");
  card.dataset.id = hit.id;
  if (hit.image_url) {
    const img = el("img");
    img.src = hit.image_url;
    img.alt = hit.text || hit.id;
    img.loading = "lazy";
    card.append(img);
  }
  if (hit.text || !hit.image_url) card.append(el("p", "caption", hit.text || hit.id));
  const meta = el("div", "meta");
  meta.append(el("span", "rank", "#" + hit.rank), el("span", "score", "score " + hit.score));
  if (hit.prior !== undefined) {
    // a caption index's prior: how typical the caption is of no image in particular, part of the score
    const prior = el("span", "prior", "prior " + hit.prior);
    prior.title = "caption prior (lowers captions that match every image alike): " + hit.prior + " of the score";
    meta.append(prior);
  }
  meta.title = hit.id;
  card.append(meta);
  const terms = el("ul", "terms");
  hit.terms.slice(0, TERMS_SHOWN).forEach((t, i) => {
    const li = el("li", i === 0 ? "term top" : "term");
    li.append(el("span", "name", t.term), el("small", "contribution", String(t.contribution)));
    li.title = `${t.term}: query weight x image impact = ${t.contribution}`;
    terms.append(li);
  });
  if (hit.terms.length > TERMS_SHOWN) terms.append(el("li", "term more", `+${hit.terms.length - TERMS_SHOWN} more`));
  card.append(terms);
  return card;
}

function render(data) {
  renderQuery(data.query.terms);
  const grid = $("results");
  grid.replaceChildren(...data.hits.map(renderHit));
  if (!data.hits.length) grid.append(el("p", "none", "No document shares a term with the query."));
  $("status").textContent =
    `${data.hits.length} hits · encode ${data.encode_ms.toFixed(1)} ms · search ${data.search_ms.toFixed(1)} ms`;
}

async function call(url, options) {
  showError("");
  $("status").textContent = "searching…";
  try {
    const resp = await fetch(url, options);
    const data = await resp.json();
    if (!resp.ok) throw new Error(data.error || `HTTP ${resp.status}`);
    render(data);
  } catch (err) {
    $("status").textContent = "";
    showError(err.message);
  }
}

function searchText(q) {
  $("query-image").hidden = true;
  history.replaceState(null, "", "?q=" + encodeURIComponent(q));
  return call(`/api/search?k=${K}&q=${encodeURIComponent(q)}`);
}

function searchImage(file) {
  if (!file) return;
  const preview = $("query-image");
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  history.replaceState(null, "", location.pathname);
  const target = $("target-box").hidden ? "images" : $("target").value;
  return call(`/api/search/image?k=${K}&target=${target}`, {
    method: "POST",
    body: file,
    headers: { "Content-Type": file.type || "application/octet-stream" },
  });
}

async function loadHealth() {
  try {
    const h = await (await fetch("/api/health")).json();
    $("about").textContent = `${h.num_docs} images · model ${h.model_id} · every score is a sum of words`;
    if (h.indexes.captions && h.indexes.captions.ready) $("target-box").hidden = false;
    if (h.status !== "ok") {
      showError(Object.values(h.indexes).filter((v) => v.error).map((v) => v.error).join(" "));
    }
  } catch (err) {
    showError("the server does not answer: " + err.message);
  }
}

$("search-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const q = $("q").value.trim();
  if (q) searchText(q);
});
$("file").addEventListener("change", (e) => searchImage(e.target.files[0]));
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  searchImage(e.dataTransfer.files[0]);
});

loadHealth();
const initial = new URLSearchParams(location.search).get("q");
if (initial && initial.trim()) {
  $("q").value = initial;
  searchText(initial.trim());
}
