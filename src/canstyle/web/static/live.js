// Live job updates. One browser keeps a single event stream (GET /api/events) however many tabs
// are open: the visible tab that holds the Web Lock "canstyle-events" reads it and relays every
// event to the other tabs over a BroadcastChannel. A hidden tab closes its stream and lets go
// of the lock, so background tabs never use up the browser's six connections per host.

const channel = "BroadcastChannel" in window ? new BroadcastChannel("canstyle-events") : null;
const listeners = new Set();
let source = null;
let release = null;  // resolves the held lock
let pending = false;  // a lock request is waiting

export function onJob(fn) { listeners.add(fn); }

function deliver(job) { for (const fn of listeners) fn(job); }

if (channel) channel.onmessage = (ev) => deliver(ev.data);

function open(onDown) {
  source = new EventSource("/api/events");
  const relay = (ev, extra) => {
    const job = { ...JSON.parse(ev.data), ...extra };
    deliver(job);
    if (channel) channel.postMessage(job);
  };
  source.addEventListener("job", (ev) => relay(ev, {}));
  source.addEventListener("deleted", (ev) => relay(ev, { deleted: true }));  // { id, deleted: true }
  source.onerror = () => onDown(source.readyState === EventSource.CLOSED);
  source.onopen = () => onDown(null);
}

function close() {
  if (source) { source.close(); source = null; }
  if (release) { release(); release = null; }
}

// Start streaming while this tab is visible (and, with Web Locks, while it leads).
export function startEvents(onDown) {
  const lead = () => {
    if (document.hidden || source || release || pending) return;
    if (!navigator.locks) { open(onDown); return; }
    pending = true;
    navigator.locks.request("canstyle-events", () => new Promise((resolve) => {
      pending = false;
      if (document.hidden) { resolve(); return; }
      release = resolve;
      open(onDown);
    }));
  };
  document.addEventListener("visibilitychange", () => (document.hidden ? close() : lead()));
  window.addEventListener("pagehide", close);
  lead();
}

export function stopEvents() { close(); }
