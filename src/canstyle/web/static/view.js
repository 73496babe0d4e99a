// The live job panel, the gallery, the job table and the full-size before/after viewer.
import { $, api, busy, del, duration, el, image, postJSON, showError } from "./api.js";

export const TERMINAL = new Set(["done", "failed", "cancelled"]);
export const state = { job: null, lastPreview: 0, galleryShown: 12, rerun: () => {}, current: null };
const TITLE = "canstyle studio";

// -- live job ------------------------------------------------------------------
// A live image that fails to load (the server stopping, say) falls back to its last good frame,
// or hides: never the browser's broken-image alt text.
for (const img of [$("#job-preview"), $("#job-style")]) {
  img.addEventListener("load", () => { img.dataset.good = img.src; });
  img.addEventListener("error", () => {
    if (img.dataset.good && img.src !== img.dataset.good) img.src = img.dataset.good;
    else img.removeAttribute("src");
  });
}

export function watch(job) {
  if (state.job !== job.id) {
    state.job = job.id;
    state.lastPreview = 0;
    for (const id of ["#job-preview", "#job-style"]) { $(id).removeAttribute("src"); delete $(id).dataset.good; }
    $("#job-results").replaceChildren();
  }
  renderJob(job);
}

// Overall progress in [0, 1]: each photo is an equal share; painting the style counts as 0.
function fraction(job) {
  const p = job.progress;
  if (job.status === "done") return 1;
  if (!p || p.stage !== "stylize" || !p.total) return (job.results.length || 0) / (job.request.photos.length || 1);
  return Math.min(1, (p.photo + p.step / p.total) / (p.photos || 1));
}

function timeText(job) {
  if (!job.started) return job.status === "queued" ? "" : "";
  const end = job.finished ?? job.server_time ?? Date.now() / 1000;
  const elapsed = end - job.started;
  if (TERMINAL.has(job.status)) return `took ${duration(elapsed)}`;
  const f = fraction(job);
  const left = f > 0.02 ? elapsed * (1 - f) / f : NaN;
  return `elapsed ${duration(elapsed)}` + (Number.isFinite(left) ? ` · about ${duration(left)} left` : "");
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

function setTitle(job) {
  const pct = Math.round(100 * fraction(job));
  const prefix = { done: "✓ done", failed: "✗ failed", cancelled: "cancelled", queued: "queued" }[job.status];
  document.title = `${prefix ?? `${pct}%`} · ${TITLE}`;
}

export function renderJob(job) {
  state.current = job;
  $("#job-empty").hidden = true;
  $("#job-view").hidden = false;
  const badge = $("#job-status");
  badge.textContent = job.status + (job.cancel_requested ? " (cancelling)" : "");
  badge.className = `badge ${job.status}`;
  $("#job-id").textContent = job.id;
  $("#job-progress").value = fraction(job);
  $("#job-detail").textContent = progressText(job);
  $("#job-time").textContent = timeText(job);
  $("#job-error").textContent = job.error || "";
  $("#cancel-btn").hidden = TERMINAL.has(job.status);
  $("#zip-link").hidden = !job.results.length;
  $("#zip-link").href = job.links.zip;
  setTitle(job);
  const p = job.progress;
  const running = job.status === "running";
  if (job.preview_n > state.lastPreview && running) {
    state.lastPreview = job.preview_n;
    $("#job-preview").src = `${job.links.preview}?n=${job.preview_n}`;
  }
  $("#preview-figure").hidden = !running || !$("#job-preview").getAttribute("src");
  const styleReady = job.status === "done" || job.results.length || (p && p.stage === "stylize");
  if (!$("#job-style").getAttribute("src") && styleReady) $("#job-style").src = job.links.style;
  $("#style-figure").hidden = !$("#job-style").getAttribute("src");
  const shown = [...$("#job-results").children].map((c) => c.dataset.index).join();
  if (shown !== job.results.map((r) => r.index).join()) {
    $("#job-results").replaceChildren(...job.results.map((r) => resultCard(job, r)));
  }
}

function photoName(job, r) { return `photo ${r.index + 1} of ${job.request.photos.length}`; }

function resultCard(job, r) {
  return el("figure", { class: "result", "data-index": r.index },
    el("button", { type: "button", class: "plain", onclick: () => openViewer(job, r),
                   "aria-label": `View result for ${photoName(job, r)} full size` },
       image(r.thumb_url, `Result: ${photoName(job, r)} in the chosen painting's style`)),
    el("figcaption", {}, `result ${r.index + 1} · ${r.width}×${r.height} · `,
       el("a", { href: r.download_url, download: "", class: "download" }, "Download")));
}

export async function cancelJob() {
  if (!state.job) return;
  try { await postJSON(`/api/jobs/${state.job}/cancel`); } catch (err) { showError("#job-error", err); }
}

// -- viewer ------------------------------------------------------------------------
export function openViewer(job, r) {
  const dialog = $("#viewer");
  $("#viewer-title").textContent = `Result ${r.index + 1} · ${r.width}×${r.height}`;
  $("#viewer-after").src = r.url;
  $("#viewer-after").alt = `Result: ${photoName(job, r)}, painted`;
  $("#viewer-before").src = `/api/photos/${encodeURIComponent(r.photo)}/view`;
  $("#viewer-before").alt = `Original: ${photoName(job, r)}`;
  $("#viewer-download").href = r.download_url;
  split();
  if (!dialog.open) dialog.showModal();
}

export function split() {
  const v = Number($("#viewer-split").value);
  $("#viewer-before-clip").style.clipPath = `inset(0 ${100 - v}% 0 0)`;  // left part: before
}

// -- gallery and history ---------------------------------------------------------
function params(job) {
  const r = job.request, s = job.info.style || {};
  const style = s.kind === "upload" ? "uploaded painting" : `${s.model_name || r.style.model || "?"} #${s.seed ?? r.style.seed}`;
  const o = job.info.options || {};
  return `${style} · ${o.size ?? r.size}px · strength ${o.style_weight ?? r.style_strength} · ` +
         `colour ${o.preserve_color ?? r.preserve_color} · ${planText(job)} · seed ${r.seed}`;
}

// The schedule the server ran: evaluations per scale, coarse to fine, e.g. "64px 150 → 512px 14 evals".
function planText(job) {
  const plan = (job.results && job.results[0] && job.results[0].plan) || [];
  return plan.length ? plan.map(([h, w, n]) => `${Math.max(h, w)}px ${n}`).join(" → ") + " evals"
                     : `${(job.info.options || {}).quality || job.request.quality || "standard"} quality`;
}

export async function loadGallery() {
  const { body: items, total } = await api(`/api/gallery?offset=0&limit=${state.galleryShown}`, {}, true);
  $("#gallery-list").replaceChildren(...items.flatMap((job) => job.results.map((r) =>
    el("figure", { class: "card" },
      el("button", { type: "button", class: "plain", onclick: () => openViewer(job, r),
                     "aria-label": `View ${params(job)} full size` },
         image(r.thumb_url, `Result of job ${job.id}, ${photoName(job, r)}: ${params(job)}`)),
      el("figcaption", {}, el("span", {}, params(job) + (job.status === "done" ? "" : ` · job ${job.status}`)), " ",
         el("time", {}, new Date((job.finished || job.created) * 1000).toLocaleString()),
         el("span", { class: "actions" },
           el("a", { href: r.download_url, download: "", class: "download" }, "Download"),
           el("a", { href: job.links.zip, download: "" }, "Zip"),
           el("button", { type: "button", class: "small", onclick: () => state.rerun(job) }, "Run again"),
           el("button", { type: "button", class: "small danger", "aria-label": `Delete result ${r.index + 1} of job ${job.id}`,
                          onclick: (ev) => busy(ev.currentTarget, async () => {
                            if (!confirm(`Delete result ${r.index + 1} of job ${job.id}? This cannot be undone.`)) return;
                            await del(`/api/jobs/${job.id}/results/${r.index}`).catch((e) => alert(e.message));
                            refresh();
                          }) }, "Delete")))))));
  if (!items.length) $("#gallery-list").append(el("p", { class: "hint" }, "Finished results appear here."));
  $("#gallery-more").hidden = total <= state.galleryShown;
}

function jobActions(j) {
  if (!TERMINAL.has(j.status)) {
    return el("button", { type: "button", class: "small", onclick: (ev) => busy(ev.currentTarget, async () => {
      await postJSON(j.links.cancel).catch(() => {}); refresh();
    }) }, "Cancel");
  }
  return el("span", { class: "actions" },
    el("button", { type: "button", class: "small", onclick: () => state.rerun(j) }, "Run again"),
    el("button", { type: "button", class: "small danger", "aria-label": `Delete job ${j.id} and its files`,
                   onclick: (ev) => busy(ev.currentTarget, async () => {
                     const n = j.results.length;
                     const what = n ? ` and its ${n} result${n > 1 ? "s" : ""}` : "";
                     if (!confirm(`Delete job ${j.id}${what}? This cannot be undone.`)) return;
                     await del(`/api/jobs/${j.id}`).then(() => forget(j.id)).catch((e) => alert(e.message));
                     refresh();
                   }) }, "Delete"));
}

// The table shows the newest HISTORY jobs, and fetches no more than that on each change.
const HISTORY = 50;

export async function loadHistory() {
  const [{ body: jobs, total }, counts] = await Promise.all([api(`/api/jobs?limit=${HISTORY}`, {}, true),
                                                            api("/api/queue")]);
  $("#queue-status").textContent = `${counts.running || 0} running · ${counts.queued || 0} queued`;
  $("#history-more").textContent = total > jobs.length ? `The newest ${jobs.length} of ${total} jobs.` : "";
  $("#job-table").replaceChildren(...jobs.map((j) => el("tr", { "data-id": j.id },
    el("td", {}, el("button", { type: "button", class: "link", onclick: () => watch(j),
                                "aria-label": `Show job ${j.id}` }, el("code", {}, j.id))),
    el("td", {}, el("span", { class: `badge ${j.status}` }, j.status), j.error ? ` ${j.error}` : ""),
    el("td", {}, new Date(j.created * 1000).toLocaleString()),
    el("td", {}, String(j.request.photos.length)),
    el("td", {}, jobActions(j)))));
}

export function refresh() { loadGallery().catch(() => {}); loadHistory().catch(() => {}); }

// The job to show when the page opens: the running one, else the next to run.
export async function activeJob() {
  const [running] = await api("/api/jobs?status=running&limit=1");
  if (running) return running;
  const queued = await api("/api/jobs?status=queued");
  return queued.sort((a, b) => a.queue_position - b.queue_position)[0] || null;
}

// A job deleted (here or in another tab): leave its panel if it is the one shown.
export function forget(jobId) {
  if (state.job !== jobId) return;
  state.job = null;
  state.current = null;
  $("#job-view").hidden = true;
  $("#job-empty").hidden = false;
  document.title = TITLE;
}
