// The kiosk's link to the appliance: a WebSocket (/ws) with heartbeat, reconnect with
// exponential backoff and jitter, and the conversation resumed with `hello {session}`.
// When the WebSocket cannot connect at all (a proxy that blocks upgrades), questions go to
// POST /api/chat and the reply streams back as server-sent events instead.
//
// The kiosk's own screen (this page loaded from the box itself: a loopback host) also asks for
// the box's own microphone conversation with `hello {local: true}`; the server grants it only to
// loopback clients and sends those messages wrapped as `voice.local {msg}`.

const SSE_AFTER_FAILURES = 2; // WebSocket attempts that never got a `hello`
const MAX_BACKOFF_MS = 30000;

/** True when the page was loaded from the box itself (the kiosk browser), not over the LAN. */
export function isLoopbackHost(host) {
  const h = String(host).toLowerCase().replace(/^\[|\]$/g, "");
  return h === "localhost" || h.endsWith(".localhost") || h === "::1" || /^127(\.\d{1,3}){3}$/.test(h);
}

export class Connection {
  /**
   * @param {{onMessage: (msg: object) => void, onBinary: (buf: ArrayBuffer) => void,
   *          onStatus: (status: "connecting"|"online"|"fallback"|"offline") => void}} handlers
   */
  constructor(handlers) {
    this.h = handlers;
    this.ws = null;
    this.ready = false; // the current socket got its `hello`
    this.session = sessionStorage.getItem("kiosk.session");
    this.failures = 0; // consecutive attempts that ended without a usable connection
    this.useSse = false;
    this.httpOk = true;
    this.lastRx = Date.now();
    this.heartbeatMs = 20000;
    this.retryTimer = null;
    this.status = "connecting";
    // The kiosk screen mirrors the box's own voice conversation; other pages never ask for it.
    this.local = handlers.local ?? isLoopbackHost(location.hostname);
  }

  start() {
    this.connect();
    setInterval(() => this.heartbeat(), 5000);
  }

  /** `hello` for the current session (none: a new one), asking for the local mirror if ours. */
  helloMessage() {
    return { type: "hello", ...(this.session ? { session: this.session } : {}), ...(this.local ? { local: true } : {}) };
  }

  setSession(id) {
    this.session = id;
    if (id) sessionStorage.setItem("kiosk.session", id);
    else sessionStorage.removeItem("kiosk.session");
  }

  url() {
    return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;
  }

  connect() {
    this.retryTimer = null;
    let ws;
    try {
      ws = new WebSocket(this.url());
    } catch {
      this.onClosed(null);
      return;
    }
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.ready = false;
    ws.onopen = () => ws.send(JSON.stringify(this.helloMessage()));
    ws.onmessage = (ev) => {
      this.lastRx = Date.now();
      if (typeof ev.data !== "string") { this.h.onBinary(ev.data); return; }
      let msg;
      try { msg = JSON.parse(ev.data); } catch { return; }
      if (msg.type === "hello") {
        this.ready = true;
        this.failures = 0;
        this.useSse = false;
        this.setSession(msg.session);
        if (msg.config && msg.config.heartbeat_s) this.heartbeatMs = msg.config.heartbeat_s * 1000;
        this.setStatus("online");
      } else if (msg.type === "ping") {
        this.send({ type: "pong", t: msg.t });
        return;
      }
      this.h.onMessage(msg);
    };
    ws.onclose = () => this.onClosed(ws);
  }

  onClosed(ws) {
    if (ws !== null && ws !== this.ws) return;
    const wasReady = this.ready;
    this.ws = null;
    this.ready = false;
    this.failures = wasReady ? 1 : this.failures + 1;
    if (!wasReady && this.failures >= SSE_AFTER_FAILURES) this.useSse = true;
    this.probeHttp();
    const base = Math.min(MAX_BACKOFF_MS, 500 * 2 ** Math.min(this.failures, 6));
    const delay = base * (0.5 + Math.random() / 2); // jitter: kiosks restarting together spread out
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  /** While the WebSocket is down, ask plain HTTP whether the appliance is there at all. */
  async probeHttp() {
    try {
      const r = await fetch("/healthz", { cache: "no-store" });
      this.httpOk = r.ok;
    } catch {
      this.httpOk = false;
    }
    if (!this.ready) this.setStatus(this.httpOk ? (this.useSse ? "fallback" : "connecting") : "offline");
  }

  setStatus(s) {
    if (s === this.status) return;
    this.status = s;
    this.h.onStatus(s);
  }

  heartbeat() {
    if (this.ws && this.ready) {
      // A socket that has been silent for two heartbeats is dead (a dropped Wi-Fi, a NAT).
      if (Date.now() - this.lastRx > 2 * this.heartbeatMs + 10000) { this.ws.close(); return; }
      this.send({ type: "ping", t: Date.now() });
    } else if (!this.ready) {
      this.probeHttp();
    }
  }

  /** Send a control message over the WebSocket; false when it is not connected. */
  send(obj) {
    if (this.ws && this.ready && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(obj));
      return true;
    }
    return false;
  }

  sendBinary(buf) {
    if (this.ws && this.ready && this.ws.readyState === WebSocket.OPEN) { this.ws.send(buf); return true; }
    return false;
  }

  get online() { return this.ready; }

  /** Ask a question over whichever transport works now. */
  async ask(text, image) {
    const msg = { type: "text", text, ...(image ? { image } : {}) };
    if (this.send(msg)) return;
    await this.askOverSse(text, image);
  }

  async askOverSse(text, image) {
    let resp;
    try {
      resp = await fetch("/api/chat", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ text, session: this.session, ...(image ? { image } : {}) }),
      });
    } catch {
      this.h.onMessage({ type: "error", code: "offline", message: "The kiosk is offline for a moment. Please try again shortly." });
      return;
    }
    if (!resp.ok || !resp.body) {
      const e = await resp.json().catch(() => ({}));
      this.h.onMessage({ type: "error", code: e.code || "http", message: e.message || "Something went wrong. Please try again." });
      return;
    }
    const reader = resp.body.getReader();
    const dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
        if (!data) continue;
        let msg;
        try { msg = JSON.parse(data); } catch { continue; }
        if (msg.type === "hello") { this.setSession(msg.session); continue; }
        this.h.onMessage(msg);
      }
    }
  }
}
