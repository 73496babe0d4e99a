// canstyle studio page. Plain JS modules, no build step; it uses only the public JSON API.
import { $, api, busy, del, el, image, postJSON, showError } from "./api.js";
import { onJob, startEvents } from "./live.js";
import { TERMINAL, activeJob, cancelJob, forget, loadGallery, loadHistory, refresh, renderJob, split, state,
         watch } from "./view.js";

const STORE = "canstyle-studio";
const OPTIONS = ["#opt-size", "#opt-strength", "#opt-color", "#opt-balance", "#opt-quality", "#opt-iterations", "#opt-coarse",
                 "#opt-seed", "#seed-start", "#seed-count", "#model-select"];
const pick = { photos: new Set(), style: null, grid: null };
const styleSizes = new Map();  // uploaded painting id -> its long side, for the size hint

// -- remembered choices -----------------------------------------------------------
function save() {
  const opts = Object.fromEntries(OPTIONS.map((id) => [id, $(id).value]));
  localStorage.setItem(STORE, JSON.stringify({ opts, photos: [...pick.photos], style: pick.style, grid: pick.grid }));
}

function saved() {
  try { return JSON.parse(localStorage.getItem(STORE) || "{}"); } catch (_) { return {}; }
}

// -- 1. photos ---------------------------------------------------------------------
function sourceLabel(item, what) {
  if (item.bundled) return `${what}: ${item.name}`;
  return `${what}${item.name ? `: ${item.name}` : ""}, ${item.width}×${item.height}`;
}

function thumbButton(item, selected, what, onclick, ondelete) {
  const label = sourceLabel(item, what);
  const button = el("button", { type: "button", class: "thumb" + (selected ? " selected" : ""), "data-id": item.id,
                                title: label, "aria-pressed": String(selected), onclick }, image(item.thumb_url, label));
  if (!ondelete) return el("div", { class: "thumb-wrap" }, button);
  return el("div", { class: "thumb-wrap" }, button,
    el("button", { type: "button", class: "remove", title: `Delete ${label}`, "aria-label": `Delete ${label}`,
                   onclick: ondelete }, "×"));
}

async function deleteSource(item, label, errorId, reload) {
  if (!confirm(`Delete ${label}? Results painted from it are kept, but their before/after view will lack it.`)) return;
  try { await del(`/api/photos/${item.id}`); } catch (err) { showError(errorId, err); return; }
  pick.photos.delete(item.id);
  if (pick.style && pick.style.upload === item.id) pick.style = null;
  save();
  await reload();
}

// ``fallback``: with none of the chosen photos left, choose the first (not after "Run again",
// where the user must see that the job's photo is gone rather than paint another).
async function loadPhotos(fallback = true) {
  const photos = await api("/api/photos?kind=photo");
  const ids = new Set(photos.map((p) => p.id));
  pick.photos = new Set([...pick.photos].filter((id) => ids.has(id)));
  if (fallback && pick.photos.size === 0 && photos.length) pick.photos.add(photos[0].id);
  $("#photo-list").replaceChildren(...photos.map((p) => thumbButton(p, pick.photos.has(p.id), "Photo", (ev) => {
    const on = !pick.photos.has(p.id);
    on ? pick.photos.add(p.id) : pick.photos.delete(p.id);
    ev.currentTarget.classList.toggle("selected", on);
    ev.currentTarget.setAttribute("aria-pressed", String(on));
    showError("#start-error");
    summarize();
    save();
  }, p.bundled ? null : () => deleteSource(p, sourceLabel(p, "photo"), "#photo-error", loadPhotos))));
  summarize();
}

// Each file on its own: one bad file is reported by name and the others still upload.
async function uploadFiles(files, kind) {
  const ids = [], errors = [];
  for (const file of files) {
    try {
      const meta = await api(`/api/uploads?kind=${kind}&name=${encodeURIComponent(file.name)}`, {
        method: "POST", body: file, headers: { "Content-Type": file.type || "application/octet-stream" } });
      ids.push(meta.id);
    } catch (err) {
      errors.push(err.message.includes(file.name) ? err.message : `${file.name}: ${err.message}`);
    }
  }
  return { ids, errors };
}

async function onUpload(input, kind, errorId, after) {
  showError(errorId);
  const label = input.closest("label");
  label.classList.add("busy");
  label.setAttribute("aria-busy", "true");
  input.disabled = true;
  try {
    const { ids, errors } = await uploadFiles(input.files, kind);
    if (errors.length) showError(errorId, errors.join(" · "));
    await after(ids);
  } finally {
    input.value = "";
    input.disabled = false;
    label.classList.remove("busy");
    label.removeAttribute("aria-busy");
  }
}

// -- 2. paintings ---------------------------------------------------------------------
async function loadModels() {
  const models = await api("/api/models");
  $("#model-select").replaceChildren(...models.map((m) =>
    el("option", { value: m.id }, `${m.name} (${m.art_size} px, ${m.classes.length} styles)`)));
}

function markStyle() {
  for (const b of document.querySelectorAll("#painting-grid .thumb, #style-list .thumb")) {
    const s = pick.style;
    const mine = !!s && (s.upload ? b.dataset.id === s.upload
      : b.dataset.model === s.model && Number(b.dataset.seed) === s.seed);
    b.classList.toggle("selected", mine);
    b.setAttribute("aria-pressed", String(mine));
  }
}

function selectStyle(style) {
  pick.style = style;
  showError("#start-error");
  markStyle();
  summarize();
  save();
}

async function showGrid(model, start, count) {
  const seeds = Array.from({ length: count }, (_, i) => start + i);
  const grid = await postJSON("/api/paintings", { model, seeds });
  pick.grid = { model, start, count };
  $("#painting-grid").replaceChildren(...grid.paintings.map((p) => el("button", {
    type: "button", class: "thumb painting", "data-model": grid.model.id, "data-seed": p.seed,
    title: `seed ${p.seed}`, "aria-pressed": "false", onclick: () => selectStyle({ model: grid.model.id, seed: p.seed }),
  }, image(p.url, `CAN painting by ${grid.model.name}, seed ${p.seed}`), el("span", { "aria-hidden": "true" }, `#${p.seed}`))));
  markStyle();
  save();
}

function generatePaintings(fresh = false) {
  showError("#painting-error");
  if (fresh) $("#seed-start").value = String(Math.floor(Math.random() * 2 ** 31 / 64) * 64);  // fresh seeds
  const start = Math.max(0, parseInt($("#seed-start").value, 10) || 0);
  const count = Math.min(64, Math.max(1, parseInt($("#seed-count").value, 10) || 12));
  const button = fresh ? $("#more-btn") : $("#generate-btn");
  return busy(button, () => showGrid($("#model-select").value, start, count)
    .catch((err) => showError("#painting-error", err)));
}

async function loadStyleUploads() {
  const items = await api("/api/photos?kind=style");
  if (pick.style?.upload && !items.some((s) => s.id === pick.style.upload)) pick.style = null;  // deleted
  for (const s of items) styleSizes.set(s.id, Math.max(s.width, s.height));
  $("#style-list").replaceChildren(...items.map((s) => thumbButton(s, !!pick.style && pick.style.upload === s.id,
    "Uploaded painting", () => selectStyle({ upload: s.id }), () => deleteSource(s, sourceLabel(s, "uploaded painting"), "#painting-error", loadStyleUploads))));
  markStyle();
}

// -- 3. options and start ---------------------------------------------------------
function summarize() {
  const style = !pick.style ? "no painting picked yet"
    : pick.style.upload ? "your uploaded painting" : `${pick.style.model} painting #${pick.style.seed}`;
  $("#selection-summary").textContent = `${pick.photos.size} photo(s), ${style}.`;
  // As `canstyle stylize` says: a painting enlarged over 2x to be analysed paints soft blotches.
  const long = pick.style?.upload && styleSizes.get(pick.style.upload);
  const size = parseInt($("#opt-size").value, 10);
  $("#style-hint").textContent = long && size > 2 * long
    ? `Your painting is ${long} px: at ${size} px its strokes are enlarged ${(size / long).toFixed(1)}× and come out soft. ` +
      "A larger image of it, or a smaller output size, keeps them crisp." : "";
}

function optionalInt(id) {
  const v = $(id).value.trim();
  return v === "" ? null : parseInt(v, 10);
}

function jobRequest() {
  const iterations = optionalInt("#opt-iterations");
  return {
    photos: [...pick.photos], style: pick.style,
    size: parseInt($("#opt-size").value, 10), style_strength: parseFloat($("#opt-strength").value),
    preserve_color: $("#opt-color").value, loss_scale: $("#opt-balance").value, quality: $("#opt-quality").value,
    iterations, coarse_iterations: optionalInt("#opt-coarse"), seed: optionalInt("#opt-seed"),
    // About four previews per scale: frequent enough to watch, cheap enough to encode.
    preview_every: Math.max(1, Math.min(10, Math.floor((iterations ?? 16) / 4))),
  };
}

function startJob() {
  showError("#start-error");
  if (!pick.photos.size) return showError("#start-error", "select at least one photo");
  if (!pick.style) return showError("#start-error", "pick a painting (generate some, or upload one)");
  return busy($("#start-btn"), async () => {
    try {
      watch(await postJSON("/api/jobs", jobRequest()));
      refresh();
    } catch (err) { showError("#start-error", err); }
  });
}

// "Run again": the job's settings back into the form, ready to Start (or to change first).
async function rerun(job) {
  const r = job.request;
  const set = { "#opt-size": r.size, "#opt-strength": r.style_strength, "#opt-color": r.preserve_color,
                "#opt-balance": r.loss_scale ?? "none", "#opt-quality": r.quality, "#opt-iterations": r.iterations ?? "", "#opt-coarse": r.coarse_iterations ?? "",
                "#opt-seed": r.seed ?? "" };
  for (const [id, v] of Object.entries(set)) $(id).value = String(v);
  $("#opt-strength-value").textContent = $("#opt-strength").value;
  pick.photos = new Set(r.photos);
  pick.style = r.style.upload ? { upload: r.style.upload } : { model: r.style.model, seed: r.style.seed };
  if (!r.style.upload) {
    $("#model-select").value = r.style.model;
    $("#seed-start").value = String(r.style.seed);
    await showGrid(r.style.model, r.style.seed, Math.min(64, Math.max(1, parseInt($("#seed-count").value, 10) || 12)))
      .catch((err) => showError("#painting-error", err));
  }
  await Promise.all([loadPhotos(false), loadStyleUploads()]);
  const lost = new Set(r.photos).size - pick.photos.size;
  const styleLost = r.style.upload && !pick.style;
  save();
  $("#selection-summary").textContent += ` Settings of job ${job.id} loaded: press Start.`;
  const gone = [lost && `${lost} of its ${new Set(r.photos).size} photo(s)`, styleLost && "its uploaded painting"].filter(Boolean);
  showError("#start-error", gone.length ? `Deleted since that job: ${gone.join(" and ")}. Pick again before you start.` : "");
  $("#options").scrollIntoView({ behavior: "smooth", block: "start" });
  $("#start-btn").focus({ preventScroll: true });
}

// -- live updates --------------------------------------------------------------------
function onUpdate(job) {
  if (job.deleted) { forget(job.id); refresh(); return; }  // deleted, perhaps in another tab
  if (job.id === state.job) renderJob(job);
  else if (!state.job && !TERMINAL.has(job.status)) watch(job);
  // The table and gallery change only with a status or a result (added, or deleted elsewhere).
  const key = `${job.status}:${job.results.map((r) => r.index).join()}`;
  const last = state.statuses?.[job.id];
  state.statuses = { ...(state.statuses || {}), [job.id]: key };
  if (last !== key) refresh();
}

// Back from hidden or offline: events may have been missed, a delete among them.
async function resync() {
  const id = state.job;
  if (id) api(`/api/jobs/${id}`).then(renderJob).catch((err) => { if (err.status === 404) forget(id); });
  refresh();
}

// The form starts from the server's defaults (the library's StylizeOptions), never from
// numbers typed into the page; a user's saved choices then go on top.
async function applyDefaults() {
  const d = (await api("/api/config")).defaults;
  const fields = { "#opt-size": "size", "#opt-strength": "style_strength", "#opt-color": "preserve_color",
                   "#opt-balance": "loss_scale", "#opt-quality": "quality" };
  for (const [id, key] of Object.entries(fields)) if (d[key]?.default !== undefined) $(id).value = d[key].default;
}

async function restore() {
  const s = saved();
  for (const [id, v] of Object.entries(s.opts || {})) if ($(id) && v !== undefined) $(id).value = v;
  $("#opt-strength-value").textContent = $("#opt-strength").value;
  pick.photos = new Set(s.photos || []);
  pick.style = s.style || null;
  if (s.grid) await showGrid(s.grid.model, s.grid.start, s.grid.count).catch(() => {});
}

async function init() {
  $("#photo-input").addEventListener("change", (ev) => onUpload(ev.target, "photo", "#photo-error", async (ids) => {
    if (ids.length) pick.photos = new Set(ids);  // fresh uploads are what the user wants to paint
    save();
    await loadPhotos();
  }));
  $("#style-input").addEventListener("change", (ev) => onUpload(ev.target, "style", "#painting-error", async (ids) => {
    await loadStyleUploads();
    if (ids.length) selectStyle({ upload: ids[0] });
  }));
  $("#generate-btn").addEventListener("click", () => generatePaintings(false));
  $("#more-btn").addEventListener("click", () => generatePaintings(true));
  $("#start-btn").addEventListener("click", startJob);
  $("#cancel-btn").addEventListener("click", (ev) => busy(ev.currentTarget, cancelJob));
  $("#rerun-btn").addEventListener("click", () => state.current && rerun(state.current));
  $("#gallery-more").addEventListener("click", () => { state.galleryShown += 12; loadGallery(); });
  $("#viewer-split").addEventListener("input", split);
  $("#viewer-close").addEventListener("click", () => $("#viewer").close());
  $("#opt-strength").addEventListener("input", (e) => { $("#opt-strength-value").textContent = e.target.value; });
  for (const id of OPTIONS) $(id).addEventListener("change", () => { showError("#start-error"); save(); });
  $("#opt-size").addEventListener("input", summarize);
  for (const id of ["#seed-start", "#seed-count", "#model-select"]) $(id).addEventListener("input", () => showError("#painting-error"));
  state.rerun = rerun;
  await Promise.all([loadModels(), applyDefaults()]);
  await restore();
  await Promise.all([loadPhotos(), loadStyleUploads(), loadGallery(), loadHistory()]);
  const job = await activeJob();
  if (job) watch(job);  // reopening the page picks the running job back up
  onJob(onUpdate);
  startEvents((closed) => { if (closed !== null) api("/api/config").catch(() => {}); });  // down? probe
  document.addEventListener("visibilitychange", () => { if (!document.hidden) resync(); });
  document.addEventListener("studio-online", resync);
  document.body.dataset.ready = "1";
}

init().catch((err) => showError("#start-error", err));
