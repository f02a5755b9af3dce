// The kiosk page: conversation bubbles with streamed, safely rendered Markdown; text, photo and
// voice questions; the WebSocket connection (with SSE fallback) lives in connection.js.
// On the kiosk's own screen, the box's own microphone conversation (`voice.local {msg}`) shows
// here too, as its own bubbles beside the page's turns; its reply audio plays on the box's speaker.
import { Connection } from "./connection.js";
import { ImageProblem, scaleImage } from "./image.js";
import { renderMarkdown } from "./markdown.js";
import { Mic, Player } from "./voice.js";

const $ = (id) => document.getElementById(id);
const body = document.body;
const log = $("log");
const STATE_LABEL = { idle: "Ready", listening: "Listening…", thinking: "Thinking…", speaking: "Speaking…" };
const FONT_STEPS = [0.85, 1, 1.15, 1.3, 1.5];

let config = { idle_reset_s: 120, image_max_side: 1024, max_image_bytes: 786432, max_text_chars: 1000, voice: false, vision: false };
const replies = new Map(); // turn -> {el, text, done}
const localReplies = new Map(); // the box's own mic conversation: turn -> {el, text, done}
let ownState = "idle"; // this page's session
let localState = "idle"; // the box's own mic conversation (kiosk screen only)
let pendingImage = null; // {dataUrl, width, height}
let fontStep = 1;
let idleTimer = null;
const renderQueued = new Set(); // reply records waiting for the next frame

const mic = new Mic();
const player = new Player();
const conn = new Connection({ onMessage, onBinary: (buf) => player.push(buf), onStatus });

// -- conversation view ---------------------------------------------------------------------------

function showConversation() {
  $("attract").hidden = true;
  log.hidden = false;
}

function scrollToEnd() {
  const main = $("main");
  main.scrollTop = main.scrollHeight;
}

function addItem(cls, build) {
  showConversation();
  const li = document.createElement("li");
  li.className = `msg ${cls}`;
  build(li);
  log.append(li);
  scrollToEnd();
  return li;
}

function addVisitor(text, imageUrl, local = false) {
  return addItem(local ? "visitor local" : "visitor", (li) => {
    const bubble = document.createElement("div");
    bubble.className = "bubble";
    if (imageUrl) {
      const img = document.createElement("img");
      img.src = imageUrl; // our own canvas output (a data: URL), never model text
      img.alt = "Your photo";
      img.className = "thumb";
      bubble.append(img);
    }
    if (text) bubble.append(document.createTextNode(text));
    li.append(bubble);
  });
}

function addNotice(text) {
  return addItem("notice", (li) => { li.textContent = text; li.setAttribute("role", "alert"); });
}

function replyFor(turn, local = false) {
  const map = local ? localReplies : replies;
  let r = map.get(turn);
  // The local conversation starts its turns from 1 again after its idle reset: a finished
  // bubble is never reopened by a later turn with the same number.
  if (!r || (local && r.done)) {
    const li = addItem(local ? "kiosk local" : "kiosk", (item) => {
      const bubble = document.createElement("div");
      bubble.className = "bubble md";
      bubble.setAttribute("aria-busy", "true");
      item.append(bubble);
    });
    r = { el: li.firstChild, text: "", done: false };
    map.set(turn, r);
  }
  return r;
}

function queueRender(r) {
  // Deltas arrive word by word; re-render at most once per frame.
  if (renderQueued.has(r)) return;
  renderQueued.add(r);
  requestAnimationFrame(() => {
    renderQueued.delete(r);
    if (r.el.isConnected) { renderMarkdown(r.text, r.el); scrollToEnd(); }
  });
}

function onDelta(msg, local) {
  const r = replyFor(msg.turn, local);
  r.text = msg.reset ? msg.text : r.text + msg.text;
  queueRender(r);
}

function onDone(msg, local) {
  const r = replyFor(msg.turn, local);
  r.text = msg.text;
  r.done = true;
  renderMarkdown(r.text, r.el);
  r.el.removeAttribute("aria-busy");
  r.el.parentElement.dataset.outcome = msg.outcome || "ok";
  if (msg.kind) r.el.parentElement.dataset.kind = msg.kind;
  if (!local && msg.kind === "clarify" && Array.isArray(msg.choices)) addChoices(r, msg);
  // One announcement per reply, not one per word; the box says its own replies aloud already.
  if (!local) $("announce").textContent = r.text;
  scrollToEnd();
}

function addChoices(r, msg) {
  // A clarifying question: one button per entry it offers, labelled with the entry's own
  // question. A tap answers it (`choose`); typing or saying the answer works as well.
  const box = document.createElement("div");
  box.className = "choices";
  for (const c of msg.choices) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "choice";
    b.textContent = c.label;
    b.addEventListener("click", () => {
      for (const other of box.querySelectorAll("button")) other.disabled = true;
      addVisitor(c.label, null);
      conn.send({ type: "choose", turn: msg.turn, id: c.id });
    });
    box.append(b);
  }
  r.el.parentElement.append(box);
}

function onTranscript(msg, local) {
  const t = $("transcript");
  t.hidden = !msg.text;
  t.textContent = msg.text;
  t.classList.toggle("final", !!msg.final);
  t.classList.toggle("local", local);
  if (msg.final && msg.text) {
    addVisitor(msg.text, null, local);
    t.hidden = true;
    if (!local) stopMic(false);
  }
}

function showState() {
  // The page's own turn first; while it is idle the indicator follows the box's own mic.
  const state = ownState !== "idle" ? ownState : localState;
  body.dataset.state = state;
  body.dataset.local = ownState === "idle" && localState !== "idle" ? "true" : "false";
  $("state-label").textContent = STATE_LABEL[state] || state;
}

function setState(state) {
  ownState = state;
  showState();
  if (state !== "listening" && mic.active && state !== "idle") stopMic(false);
}

function onLocal(msg) {
  // The box's own microphone conversation, mirrored to this kiosk screen.
  if (!msg || typeof msg !== "object") return;
  switch (msg.type) {
    case "state":
      localState = msg.state;
      showState();
      break;
    case "transcript":
      onTranscript(msg, true);
      break;
    case "reply.delta":
      onDelta(msg, true);
      break;
    case "reply.done":
      onDone(msg, true);
      break;
    case "error":
      addNotice(msg.message || "Something went wrong.");
      break;
  }
}

// -- protocol ------------------------------------------------------------------------------------

function onMessage(msg) {
  if (msg.type !== "pong") touch(); // heartbeats are not visitor activity
  switch (msg.type) {
    case "hello":
      if (msg.config) applyConfig(msg.config);
      // A new server-side session numbers its turns from 1 again: keep the bubbles on screen,
      // but never append a new reply to an old bubble.
      if (!msg.resumed) replies.clear();
      // A (re)started mirror sends the local conversation's current state right after this.
      body.dataset.mirror = msg.local ? "on" : "off";
      updateHint();
      if (!msg.local) { localState = "idle"; showState(); }
      break;
    case "state":
      setState(msg.state);
      break;
    case "transcript":
      onTranscript(msg, false);
      break;
    case "reply.delta":
      onDelta(msg, false);
      break;
    case "reply.done":
      onDone(msg, false);
      break;
    case "voice.local":
      onLocal(msg.msg);
      break;
    case "audio.start":
      player.begin(msg.turn, msg.rate);
      break;
    case "audio.end":
      player.end(msg.turn);
      break;
    case "error":
      if (msg.code === "voice_unavailable") { applyConfig({ ...config, voice: false }); stopMic(false); }
      // The box's own microphone has a visitor, or other screens use every voice place: the
      // server ended (or never started) this stream; the visitor may tap again later.
      if (msg.code === "voice_busy" || msg.code === "voice_full") stopMic(false);
      addNotice(msg.message || "Something went wrong.");
      break;
  }
}

function onStatus(status) {
  body.dataset.status = status;
  $("offline").hidden = status !== "offline";
}

function applyConfig(c) {
  config = { ...config, ...c };
  updateHint();
  $("text").maxLength = config.max_text_chars || 1000;
  armIdle();
}

// The kiosk's own screen (the local mirror is on) talks through the box's microphone: the
// wake word, or a tap on the microphone (`listen`). Any other page uses its own microphone.
function boxListens() {
  return body.dataset.mirror === "on" && !!config.local_voice && (config.listen || []).includes("touch");
}

function updateHint() {
  const micBtn = $("mic");
  const browserVoice = !!config.voice && !!(navigator.mediaDevices && window.AudioWorkletNode);
  const local = body.dataset.mirror === "on";
  const modes = config.listen || [];
  const ways = [];
  if (local && config.local_voice && modes.includes("wake") && config.wake_phrase) ways.push(`Say “${config.wake_phrase}”`);
  if (boxListens() || (!local && browserVoice)) ways.push(ways.length ? "tap the microphone" : "Tap the microphone and speak");
  micBtn.disabled = !(boxListens() || browserVoice);
  micBtn.title = micBtn.disabled ? "Voice is not available on this kiosk — please type your question" : "Tap and speak";
  $("attract-hint").textContent = ways.length ? `${ways.join(" or ")}, or type below.` : "Type your question below.";
}

// -- asking --------------------------------------------------------------------------------------

async function ask(text) {
  text = text.trim();
  if (!text && !pendingImage) return;
  const image = pendingImage;
  clearImage();
  addVisitor(text, image && image.dataUrl);
  $("text").value = "";
  player.stop();
  await conn.ask(text, image && image.dataUrl);
}

$("ask").addEventListener("submit", (ev) => {
  ev.preventDefault();
  ask($("text").value);
});

for (const b of document.querySelectorAll(".suggestion")) {
  b.addEventListener("click", () => ask(b.textContent));
}

// -- photos --------------------------------------------------------------------------------------

function clearImage() {
  pendingImage = null;
  $("preview").hidden = true;
  $("preview-img").removeAttribute("src");
  $("file").value = "";
}

async function usePhoto(file) {
  const err = $("image-error");
  err.hidden = true;
  if (!file) return;
  try {
    pendingImage = await scaleImage(file, { maxSide: config.image_max_side || 1024, maxBytes: config.max_image_bytes || 786432 });
    $("preview-img").src = pendingImage.dataUrl;
    $("preview").hidden = false;
    $("text").focus();
  } catch (e) {
    clearImage();
    err.textContent = e instanceof ImageProblem ? e.message : "That photo could not be used.";
    err.hidden = false;
  }
}

$("file").addEventListener("change", () => usePhoto($("file").files[0]));
$("preview-remove").addEventListener("click", clearImage);

// A file input opens a native file dialog, which on the kiosk's own screen would browse the kiosk
// user's files. There the photo button opens the camera inside the page instead (getUserMedia)
// and is hidden when the box has no camera; on a visitor's phone the input asks for the camera
// (capture="environment"). (ops/install.sh also turns Chromium's file dialogs off by policy.)
let camera = null; // the MediaStream while the camera is open

async function openCamera() {
  if (camera) return;
  try {
    camera = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment", width: { ideal: 1920 } }, audio: false });
  } catch {
    camera = null;
    $("image-error").textContent = "The camera could not be started; please ask your question in words.";
    $("image-error").hidden = false;
    return;
  }
  $("camera-shoot").disabled = true; // until the first picture is there
  $("camera-video").srcObject = camera;
  $("camera").hidden = false;
}

$("camera-video").addEventListener("loadeddata", () => {
  $("camera-shoot").disabled = false;
  $("camera-shoot").focus();
});

function closeCamera() {
  if (camera) camera.getTracks().forEach((t) => t.stop());
  camera = null;
  $("camera-video").srcObject = null;
  $("camera").hidden = true;
}

$("camera-cancel").addEventListener("click", closeCamera);
$("camera-shoot").addEventListener("click", async () => {
  const video = $("camera-video");
  if (!video.videoWidth) return; // no picture yet
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  closeCamera();
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.92));
  await usePhoto(blob);
});

if (conn.local) {
  // The kiosk's own screen: never the file dialog.
  $("file").addEventListener("click", (ev) => { ev.preventDefault(); openCamera(); });
  $("photo-btn").hidden = true;
  const devices = navigator.mediaDevices ? navigator.mediaDevices.enumerateDevices() : Promise.resolve([]);
  devices.then((list) => { $("photo-btn").hidden = !list.some((d) => d.kind === "videoinput"); }, () => {});
}

// -- voice ---------------------------------------------------------------------------------------

async function startMic() {
  player.stop(); // barge-in: the visitor speaks, the kiosk stops talking at once
  if (ownState === "speaking" || ownState === "thinking") conn.send({ type: "cancel" });
  if (!conn.send({ type: "audio.start", rate: 16000 })) { addNotice("Voice needs a live connection; please type instead."); return; }
  try {
    await mic.start((frame) => conn.sendBinary(frame));
  } catch {
    conn.send({ type: "audio.end" });
    addNotice("The microphone could not be started; please type your question.");
    return;
  }
  $("mic").setAttribute("aria-pressed", "true");
  $("mic").setAttribute("aria-label", "Stop listening");
}

function stopMic(sendEnd = true) {
  if (!mic.active) return;
  mic.stop();
  if (sendEnd) conn.send({ type: "audio.end" });
  $("mic").setAttribute("aria-pressed", "false");
  $("mic").setAttribute("aria-label", "Speak");
}

$("mic").addEventListener("click", () => {
  if (boxListens()) { player.stop(); conn.send({ type: "listen" }); return; }
  mic.active ? stopMic() : startMic();
});

// -- start over, idle reset, text size -----------------------------------------------------------

function startOver() {
  stopMic();
  closeCamera();
  player.stop();
  conn.send({ type: "cancel" });
  replies.clear();
  localReplies.clear();
  log.replaceChildren();
  log.hidden = true;
  $("attract").hidden = false;
  $("transcript").hidden = true;
  $("text").value = "";
  clearImage();
  $("image-error").hidden = true;
  setFont(1);
  conn.setSession(null);
  conn.send(conn.helloMessage()); // a fresh session: the next visitor starts clean
  $("announce").textContent = "";
}

function touch() { armIdle(); }

function armIdle() {
  clearTimeout(idleTimer);
  idleTimer = setTimeout(() => {
    if (body.dataset.state === "idle" && (log.childElementCount || $("text").value)) startOver();
    else armIdle();
  }, (config.idle_reset_s || 120) * 1000);
}

function setFont(step) {
  fontStep = Math.max(0, Math.min(FONT_STEPS.length - 1, step));
  document.documentElement.style.setProperty("--scale", FONT_STEPS[fontStep]);
  $("font-down").disabled = fontStep === 0;
  $("font-up").disabled = fontStep === FONT_STEPS.length - 1;
}

$("reset").addEventListener("click", startOver);
$("font-down").addEventListener("click", () => setFont(fontStep - 1));
$("font-up").addEventListener("click", () => setFont(fontStep + 1));
for (const ev of ["pointerdown", "keydown", "input"]) document.addEventListener(ev, touch, { passive: true });
document.addEventListener("keydown", (ev) => {
  if (ev.key === "Escape") { conn.send({ type: "cancel" }); player.stop(); stopMic(); closeCamera(); }
});

setFont(1);
armIdle();
conn.start();
window.kiosk = { conn, replies, localReplies }; // for diagnostics in the browser console and tests
