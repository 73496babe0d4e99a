// Small helpers shared by the studio's page: DOM building, the JSON API, busy buttons, offline banner.
// Text from the server is always set with textContent, never parsed as HTML.

export const $ = (sel) => document.querySelector(sel);

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) node.append(c);
  return node;
}

// An <img> that stays invisible until it has loaded, so no broken-image icon ever shows.
export function image(src, alt, attrs = {}) {
  const img = el("img", { alt, loading: "lazy", decoding: "async", class: "pending", ...attrs });
  img.addEventListener("load", () => img.classList.remove("pending"));
  img.addEventListener("error", () => img.classList.add("pending"));
  img.src = src;
  return img;
}

function errorText(body, res) {
  const d = body && body.detail;
  if (typeof d === "string") return d;
  if (Array.isArray(d)) return d.map((e) => `${(e.loc || []).slice(1).join(".")}: ${e.msg}`).join("; ");
  return `${res.status} ${res.statusText}`;
}

// -- server reachability: a banner while requests fail at the network level -----------------------
let offlineTimer = null;

export function setOnline(ok) {
  $("#offline").hidden = ok;
  if (ok || offlineTimer) return;
  offlineTimer = setInterval(async () => {  // probe until the server answers again
    try {
      const res = await fetch("/api/config", { cache: "no-store" });
      if (res.ok) {
        clearInterval(offlineTimer);
        offlineTimer = null;
        $("#offline").hidden = true;
        document.dispatchEvent(new Event("studio-online"));
      }
    } catch (_) { /* still down */ }
  }, 3000);
}

// The JSON body of a request; errors carry the HTTP status (err.status), and a failure to reach
// the server shows the offline banner. ``withTotal``: { body, total } from X-Total-Count.
export async function api(path, options = {}, withTotal = false) {
  let res;
  try {
    res = await fetch(path, options);
  } catch (err) {
    setOnline(false);
    throw new Error("the studio server is not answering");
  }
  setOnline(true);
  if (res.status === 204) return null;
  let body = null;
  try { body = await res.json(); } catch (_) { /* not JSON */ }
  if (!res.ok) throw Object.assign(new Error(errorText(body, res)), { status: res.status });
  return withTotal ? { body, total: Number(res.headers.get("X-Total-Count") ?? NaN) } : body;
}

export const postJSON = (path, data) => api(path, {
  method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(data ?? {}),
});

export const del = (path) => api(path, { method: "DELETE" });

export function showError(id, err) { $(id).textContent = err ? String(err.message || err) : ""; }

// Run ``work`` with the button disabled and showing a spinner; a second click meanwhile does nothing.
export async function busy(button, work) {
  if (button.disabled) return undefined;
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  button.classList.add("busy");
  try {
    return await work();
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
    button.classList.remove("busy");
  }
}

export function duration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return "";
  const s = Math.round(seconds);
  return s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
}
