// canstyle studio page. Plain JS, no build step; it uses only the public JSON API.
// Text from the server is always set with textContent, never parsed as HTML.
"use strict";

const state = { photos: new Set(), style: null, job: null, source: null, lastPreview: 0 };
const TERMINAL = new Set(["done", "failed", "cancelled"]);
const $ = (sel) => document.querySelector(sel);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

function errorText(body, res) {
  const d = body && body.detail;
  if (typeof d === "string") return d;
  if (Array.isArray(d)) return d.map((e) => `${(e.loc || []).slice(1).join(".")}: ${e.msg}`).join("; ");
  return `${res.status} ${res.statusText}`;
}

async function api(path, options = {}) {
  const res = await fetch(path, options);
  let body = null;
  try { body = await res.json(); } catch (_) { /* not JSON */ }
  if (!res.ok) throw new Error(errorText(body, res));
  return body;
}

const postJSON = (path, data) => api(path, {
  method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(data ?? {}),
});

function showError(id, err) { $(id).textContent = err ? String(err.message || err) : ""; }

// -- 1. photos ---------------------------------------------------------------
function thumbButton(item, selected, onclick) {
  const label = item.bundled ? item.name : `${item.width}×${item.height}`;
  return el("button", { type: "button", class: "thumb" + (selected ? " selected" : ""),
                        "data-id": item.id, title: label, onclick },
            el("img", { src: item.thumb_url, alt: label, loading: "lazy" }));
}

async function loadPhotos() {
  const photos = await api("/api/photos?kind=photo");
  const list = $("#photo-list");
  list.replaceChildren(...photos.map((p) => thumbButton(p, state.photos.has(p.id), () => {
    state.photos.has(p.id) ? state.photos.delete(p.id) : state.photos.add(p.id);
    loadPhotos();
  })));
  if (state.photos.size === 0 && photos.length) { state.photos.add(photos[0].id); loadPhotos(); }
  summarize();
}

async function uploadFiles(files, kind) {
  const ids = [];
  for (const file of files) {
    const meta = await api(`/api/uploads?kind=${kind}`, {
      method: "POST", body: file, headers: { "Content-Type": file.type || "application/octet-stream" },
    });
    ids.push(meta.id);
  }
  return ids;
}

async function onPhotoInput(ev) {
  showError("#photo-error");
  try {
    const ids = await uploadFiles(ev.target.files, "photo");
    if (ids.length) state.photos = new Set(ids);  // fresh uploads are what the user wants to paint
  } catch (err) { showError("#photo-error", err); }
  ev.target.value = "";
  await loadPhotos();
}

// -- 2. paintings --------------------------------------------------------------
async function loadModels() {
  const models = await api("/api/models");
  $("#model-select").replaceChildren(...models.map((m) =>
    el("option", { value: m.id }, `${m.name} (${m.art_size} px, ${m.classes.length} styles)`)));
}

function selectStyle(style) {
  state.style = style;
  for (const b of document.querySelectorAll("#painting-grid .thumb, #style-list .thumb")) {
    const mine = style.upload ? b.dataset.id === style.upload
      : b.dataset.model === style.model && Number(b.dataset.seed) === style.seed;
    b.classList.toggle("selected", mine);
  }
  summarize();
}

async function generatePaintings() {
  showError("#painting-error");
  const model = $("#model-select").value;
  const start = Math.max(0, parseInt($("#seed-start").value, 10) || 0);
  const count = Math.min(64, Math.max(1, parseInt($("#seed-count").value, 10) || 12));
  const seeds = Array.from({ length: count }, (_, i) => start + i);
  try {
    const grid = await postJSON("/api/paintings", { model, seeds });
    $("#painting-grid").replaceChildren(...grid.paintings.map((p) => el("button", {
      type: "button", class: "thumb painting", "data-model": grid.model.id, "data-seed": p.seed,
      title: `seed ${p.seed}`, onclick: () => selectStyle({ model: grid.model.id, seed: p.seed }),
    }, el("img", { src: p.url, alt: `CAN painting, seed ${p.seed}` }), el("span", {}, `#${p.seed}`))));
  } catch (err) { showError("#painting-error", err); }
}

async function loadStyleUploads() {
  const items = await api("/api/photos?kind=style");
  $("#style-list").replaceChildren(...items.map((s) =>
    thumbButton(s, state.style && state.style.upload === s.id, () => selectStyle({ upload: s.id }))));
}

async function onStyleInput(ev) {
  showError("#painting-error");
  try {
    const [id] = await uploadFiles(ev.target.files, "style");
    await loadStyleUploads();
    selectStyle({ upload: id });
  } catch (err) { showError("#painting-error", err); }
  ev.target.value = "";
}

// -- 3. options and start -----------------------------------------------------
function summarize() {
  const style = !state.style ? "no painting picked yet"
    : state.style.upload ? "your uploaded painting" : `${state.style.model} painting #${state.style.seed}`;
  $("#selection-summary").textContent = `${state.photos.size} photo(s), ${style}.`;
}

function optionalInt(id) {
  const v = $(id).value.trim();
  return v === "" ? null : parseInt(v, 10);
}

function jobRequest() {
  const iterations = optionalInt("#opt-iterations");
  return {
    photos: [...state.photos], style: state.style,
    size: parseInt($("#opt-size").value, 10), style_strength: parseFloat($("#opt-strength").value),
    preserve_color: $("#opt-color").value, quality: $("#opt-quality").value,
    iterations, coarse_iterations: optionalInt("#opt-coarse"), seed: optionalInt("#opt-seed"),
    // About four previews per scale: frequent enough to watch, cheap enough to encode.
    preview_every: Math.max(1, Math.min(10, Math.floor((iterations ?? 16) / 4))),
  };
}

async function startJob() {
  showError("#start-error");
  if (!state.photos.size) return showError("#start-error", "select at least one photo");
  if (!state.style) return showError("#start-error", "pick a painting (generate some, or upload one)");
  try {
    watch(await postJSON("/api/jobs", jobRequest()));
    loadHistory();
  } catch (err) { showError("#start-error", err); }
}

// -- live job view ------------------------------------------------------------
function watch(job) {
  if (state.source) state.source.close();
  state.job = job.id;
  state.lastPreview = 0;
  $("#job-preview").removeAttribute("src");
  $("#job-style").removeAttribute("src");
  $("#preview-figure").hidden = false;
  $("#job-results").replaceChildren();
  renderJob(job);
  if (TERMINAL.has(job.status)) return;
  const source = new EventSource(job.links.events);
  source.addEventListener("job", (ev) => {
    const j = JSON.parse(ev.data);
    if (j.id !== state.job) return;
    renderJob(j);
    if (TERMINAL.has(j.status)) { source.close(); loadGallery(); loadHistory(); }
  });
  state.source = source;
}

function progressText(job) {
  const p = job.progress;
  if (job.status === "queued") return `waiting: ${job.queue_position ?? "?"} job(s) ahead`;
  if (!p) return job.status === "running" ? "loading models…" : "";
  const photo = p.photos > 1 ? `photo ${p.photo + 1}/${p.photos} · ` : "";
  const scale = p.stage === "stylize" ? ` · scale ${p.scale + 1}/${p.n_scales} (${p.size[1]}×${p.size[0]})` : "";
  const loss = p.loss == null ? "" : ` · loss ${p.loss.toPrecision(4)}`;
  return `${photo}${p.stage} · iteration ${p.step}/${p.total}${scale}${loss}`;
}

function renderJob(job) {
  $("#job-empty").hidden = true;
  $("#job-view").hidden = false;
  const badge = $("#job-status");
  badge.textContent = job.status + (job.cancel_requested ? " (cancelling)" : "");
  badge.className = `badge ${job.status}`;
  $("#job-id").textContent = job.id;
  const p = job.progress;
  const bar = $("#job-progress");
  bar.max = p && p.total ? p.total : 1;
  bar.value = job.status === "done" ? bar.max : (p && p.stage === "stylize" ? p.step : 0);
  $("#job-detail").textContent = progressText(job);
  $("#job-error").textContent = job.error || "";
  $("#cancel-btn").hidden = TERMINAL.has(job.status);
  if (job.preview_n > state.lastPreview && job.status === "running") {
    state.lastPreview = job.preview_n;
    $("#job-preview").src = `${job.links.preview}?n=${job.preview_n}`;
  }
  if (!$("#job-style").getAttribute("src") && (job.status === "done" || (p && p.stage === "stylize"))) {
    $("#job-style").src = job.links.style;
  }
  if (job.status === "done") {
    $("#preview-figure").hidden = true;  // the results take its place
    $("#job-results").replaceChildren(...job.results.map(resultCard));
  }
}

function resultCard(r) {
  return el("figure", { class: "result" },
    el("a", { href: r.url, target: "_blank", rel: "noopener" }, el("img", { src: r.url, alt: "result" })),
    el("figcaption", {}, `result ${r.index + 1} · ${r.width}×${r.height} · `,
       el("a", { href: r.download_url, download: "", class: "download" }, "Download")));
}

async function cancelJob() {
  if (!state.job) return;
  try { await postJSON(`/api/jobs/${state.job}/cancel`); } catch (err) { showError("#job-error", err); }
  loadHistory();
}

// -- gallery and history -----------------------------------------------------
function params(job) {
  const r = job.request, s = job.info.style || {};
  const style = s.kind === "upload" ? "uploaded painting" : `${s.model_name || r.style.model} #${s.seed}`;
  const o = job.info.options || {};
  return `${style} · ${o.size}px · strength ${o.style_weight} · colour ${o.preserve_color} · ` +
         `${planText(job)} · seed ${r.seed}`;
}

// The schedule the server ran: evaluations per scale, coarse to fine, e.g. "64px 150 → 512px 14".
function planText(job) {
  const plan = (job.results && job.results[0] && job.results[0].plan) || [];
  return plan.length ? plan.map(([h, w, n]) => `${Math.max(h, w)}px ${n}`).join(" → ") + " evals"
                     : `${job.info.options?.quality || "standard"} quality`;
}

async function loadGallery() {
  const items = await api("/api/gallery");
  $("#gallery-list").replaceChildren(...items.flatMap((job) => job.results.map((r) =>
    el("figure", { class: "card" },
      el("a", { href: r.url, target: "_blank", rel: "noopener" }, el("img", { src: r.url, alt: "result", loading: "lazy" })),
      el("figcaption", {}, el("span", {}, params(job)), " ",
         el("time", {}, new Date(job.finished * 1000).toLocaleString()), " ",
         el("a", { href: r.download_url, download: "", class: "download" }, "Download"))))));
  if (!items.length) $("#gallery-list").append(el("p", { class: "hint" }, "Finished results appear here."));
}

async function loadHistory() {
  const jobs = await api("/api/jobs");
  const counts = jobs.reduce((c, j) => ({ ...c, [j.status]: (c[j.status] || 0) + 1 }), {});
  $("#queue-status").textContent = `${counts.running || 0} running · ${counts.queued || 0} queued`;
  $("#job-table").replaceChildren(...jobs.slice(0, 50).map((j) => el("tr", {},
    el("td", {}, el("a", { href: "#job", onclick: () => watch(j) }, el("code", {}, j.id))),
    el("td", {}, el("span", { class: `badge ${j.status}` }, j.status), j.error ? ` ${j.error}` : ""),
    el("td", {}, new Date(j.created * 1000).toLocaleString()),
    el("td", {}, String(j.request.photos.length)),
    el("td", {}, TERMINAL.has(j.status) ? "" : el("button", { type: "button", class: "small",
      onclick: async () => { await postJSON(j.links.cancel).catch(() => {}); loadHistory(); } }, "Cancel")))));
  return jobs;
}

// -- start --------------------------------------------------------------------
async function init() {
  $("#photo-input").addEventListener("change", onPhotoInput);
  $("#style-input").addEventListener("change", onStyleInput);
  $("#generate-btn").addEventListener("click", generatePaintings);
  $("#start-btn").addEventListener("click", startJob);
  $("#cancel-btn").addEventListener("click", cancelJob);
  $("#opt-strength").addEventListener("input", (e) => { $("#opt-strength-value").textContent = e.target.value; });
  await Promise.all([loadPhotos(), loadModels(), loadStyleUploads(), loadGallery()]);
  const jobs = await loadHistory();
  const active = jobs.find((j) => !TERMINAL.has(j.status));
  if (active) watch(active);  // reopening the page picks the live job back up
  document.body.dataset.ready = "1";
}

init().catch((err) => showError("#start-error", err));
