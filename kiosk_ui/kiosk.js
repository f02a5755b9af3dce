// Minimal kiosk client: /ws with reconnect (exponential backoff + jitter) and session resume,
// falling back to POST /api/chat (SSE) when WebSocket cannot connect. Text is inserted with
// textContent only, so model output can never become markup.
const $ = (id) => document.getElementById(id);
const log = $("log");
let ws = null, session = sessionStorage.getItem("session"), failures = 0, bubbles = new Map();

function bubble(cls, text) {
  const el = document.createElement("div");
  el.className = `bubble ${cls}`;
  el.textContent = text;
  log.append(el);
  log.scrollTop = log.scrollHeight;
  return el;
}
function setState(s) { const el = $("state"); el.dataset.state = s; el.textContent = s[0].toUpperCase() + s.slice(1); }

function onMessage(msg) {
  switch (msg.type) {
    case "hello": session = msg.session; sessionStorage.setItem("session", session); break;
    case "state": setState(msg.state); break;
    case "reply.delta": {
      let b = bubbles.get(msg.turn);
      if (!b) { b = bubble("bot", ""); bubbles.set(msg.turn, b); }
      b.textContent = msg.reset ? msg.text : b.textContent + msg.text;
      log.scrollTop = log.scrollHeight;
      break;
    }
    case "reply.done": { const b = bubbles.get(msg.turn) || bubble("bot", ""); b.textContent = msg.text; break; }
    case "error": bubble("error", msg.message); break;
    case "ping": send({ type: "pong", t: msg.t }); break;
  }
}

function send(obj) { if (ws && ws.readyState === WebSocket.OPEN) { ws.send(JSON.stringify(obj)); return true; } return false; }

function connect() {
  ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  ws.onopen = () => { failures = 0; $("offline").hidden = true; send({ type: "hello", session }); };
  ws.onmessage = (ev) => { if (typeof ev.data === "string") onMessage(JSON.parse(ev.data)); };
  ws.onclose = () => {
    failures += 1; $("offline").hidden = false;
    const delay = Math.min(30000, 500 * 2 ** Math.min(failures, 6)) * (0.5 + Math.random() / 2);
    setTimeout(connect, delay);
  };
}

async function askOverSse(text) {
  const resp = await fetch("/api/chat", { method: "POST", headers: { "Content-Type": "application/json" },
                                            body: JSON.stringify({ text, session }) });
  if (!resp.ok) { const e = await resp.json().catch(() => ({})); bubble("error", e.message || "Something went wrong."); return; }
  const reader = resp.body.getReader(), dec = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, i); buf = buf.slice(i + 2);
      const data = block.split("\n").find((l) => l.startsWith("data: "));
      if (data) onMessage(JSON.parse(data.slice(6)));
    }
  }
}

$("ask").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = $("text").value.trim();
  if (!text) return;
  bubble("user", text);
  $("text").value = "";
  if (!send({ type: "text", text })) askOverSse(text);
});
$("reset").addEventListener("click", () => {
  send({ type: "cancel" }); log.replaceChildren(); bubbles.clear();
  session = null; sessionStorage.removeItem("session"); send({ type: "hello" });
});
setInterval(() => send({ type: "ping", t: Date.now() }), 15000);
connect();
