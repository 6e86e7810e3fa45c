// Reader study page: sign in with a code, then one image at a time. The server keeps every answer and
// the reader's place; this page keeps only the view (zoom, window/level) and the answer being given.
"use strict";

const $ = (id) => document.getElementById(id);
let state = null;          // the server's /api/state for the current image
let answer = {};           // {call, confidence, finding} being given
let picture = null;        // the loaded Image of the current item
const view = { zoom: 1, window: 256, level: 128 };

async function api(path, body) {
  const init = body === undefined ? {} :
    { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const response = await fetch(path, init);
  const data = await response.json();
  if (response.status === 401) { showSignIn(); throw new Error(data.error); }
  if (!response.ok) throw new Error(data.error);
  return data;
}

function showSignIn(message = "") {
  $("study").hidden = true;
  $("signin").hidden = false;
  $("signin-error").textContent = message;
  $("code").focus();
}

async function signIn(event) {
  event.preventDefault();
  try {
    await api("/api/session", { code: $("code").value });
    $("code").value = "";
    await load();
  } catch (error) {
    showSignIn(error.message);
  }
}

async function load(position) {
  show(await api(position === undefined ? "/api/state" : `/api/state?position=${position}`));
}

function show(next) {
  state = next;
  $("signin").hidden = true;
  $("study").hidden = false;
  $("title").textContent = state.title;
  $("who").textContent = `Reader: ${state.reader}`;
  $("bar").max = state.total;
  $("bar").value = state.answered;
  $("answer-error").textContent = "";
  $("question").hidden = state.done;
  $("finished").hidden = !state.done;
  $("back").hidden = !state.allow_changes || state.position === 0;
  if (state.done) {
    $("counter").textContent = `${state.total} of ${state.total} answered`;
    $("image").hidden = true;
    return;
  }
  $("counter").textContent = `Image ${state.position + 1} of ${state.total}`;
  buildQuestions();
  answer = state.answer ? { ...state.answer } : { call: null, confidence: null, finding: null };
  markAnswer();
  picture = new Image();
  picture.dataset.position = String(state.position);  // the canvas says which image it shows (draw)
  picture.onload = () => { $("image").hidden = false; resetWindow(); fit(); };
  picture.src = `/api/image/${state.item}`;
}

function buildQuestions() {
  const levels = $("confidence");
  if (levels.childElementCount !== state.confidence_levels) {
    levels.replaceChildren();
    for (let level = 1; level <= state.confidence_levels; level++) {
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.confidence = level;
      button.innerHTML = `<kbd>${level}</kbd>`;
      button.addEventListener("click", () => choose("confidence", level));
      levels.append(button);
    }
  }
  $("finding-block").hidden = state.findings.length === 0;
  const select = $("finding");
  if (select.options.length !== state.findings.length + 1) {
    select.replaceChildren(new Option("— choose —", ""), ...state.findings.map((f) => new Option(f, f)));
  }
}

function choose(field, value) {
  answer[field] = value;
  $("answer-error").textContent = "";
  markAnswer();
}

function complete() {
  return answer.call !== null && answer.confidence !== null && (state.findings.length === 0 || !!answer.finding);
}

function markAnswer() {
  for (const button of document.querySelectorAll("#calls button")) {
    button.setAttribute("aria-pressed", String(button.dataset.call === answer.call));
  }
  for (const button of document.querySelectorAll("#confidence button")) {
    button.setAttribute("aria-pressed", String(Number(button.dataset.confidence) === answer.confidence));
  }
  $("finding").value = answer.finding || "";
  $("next").disabled = !complete();
}

async function submit() {
  if (!state || state.done) return;
  if (!complete()) {
    const missing = [answer.call === null && "real or generated", answer.confidence === null && "confidence",
      state.findings.length > 0 && !answer.finding && "finding"].filter(Boolean);
    $("answer-error").textContent = `Still to answer: ${missing.join(", ")}`;
    return;
  }
  $("next").disabled = true;
  try {
    show(await api("/api/answer", {
      position: state.position,
      call: answer.call,
      confidence: answer.confidence,
      finding: state.findings.length ? answer.finding : null,
    }));
  } catch (error) {
    $("answer-error").textContent = error.message;
    $("next").disabled = !complete();
  }
}

// ---- view: window/level on the canvas's pixels, zoom by CSS size (pixelated, never smoothed) ----

// Every image starts the same way: fitted to the viewer (whole-pixel steps when enlarged), full window.
function resetWindow() { view.window = 256; view.level = 128; }

function fit() {
  const box = $("viewer").getBoundingClientRect();
  const scale = 0.97 * Math.min(box.width / picture.width, box.height / picture.height);
  view.zoom = scale >= 1 ? Math.floor(scale) : scale;
  draw();
}

function draw() {
  if (!picture || !picture.complete) return;
  const canvas = $("image");
  canvas.width = picture.width;
  canvas.height = picture.height;
  const context = canvas.getContext("2d");
  context.drawImage(picture, 0, 0);
  canvas.dataset.position = picture.dataset.position;
  if (view.window !== 256 || view.level !== 128) {
    const pixels = context.getImageData(0, 0, canvas.width, canvas.height);
    const low = view.level - view.window / 2;
    const data = pixels.data;
    for (let i = 0; i < data.length; i += 4) {
      const v = Math.max(0, Math.min(255, ((data[i] - low) / view.window) * 255));
      data[i] = data[i + 1] = data[i + 2] = v;
    }
    context.putImageData(pixels, 0, 0);
  }
  canvas.style.width = `${Math.round(picture.width * view.zoom)}px`;
  canvas.style.height = `${Math.round(picture.height * view.zoom)}px`;
  $("view-readout").textContent =
    `${picture.width}×${picture.height} px · zoom ${Math.round(view.zoom * 100)}% · ` +
    `window ${Math.round(view.window)} · level ${Math.round(view.level)}`;
}

function adjust(change) {
  view.window = Math.max(2, Math.min(512, view.window + (change.window || 0)));
  view.level = Math.max(0, Math.min(255, view.level + (change.level || 0)));
  view.zoom = Math.max(0.1, Math.min(128, view.zoom * (change.zoom || 1)));
  draw();
}

let drag = null;
function startDrag(event) { drag = { x: event.clientX, y: event.clientY }; event.preventDefault(); }
function moveDrag(event) {
  if (!drag) return;
  adjust({ window: event.clientX - drag.x, level: drag.y - event.clientY });
  drag = { x: event.clientX, y: event.clientY };
}

// ---- keyboard ----

const KEYS = {
  r: () => choose("call", "real"),
  g: () => choose("call", "generated"),
  Enter: submit,
  b: () => { if (state.allow_changes && state.position > 0) load(state.position - 1); },
  f: () => cycleFinding(),
  "+": () => adjust({ zoom: 1.25 }),
  "=": () => adjust({ zoom: 1.25 }),
  "-": () => adjust({ zoom: 0.8 }),
  0: fit,
  w: () => { resetWindow(); draw(); },
  ArrowLeft: () => adjust({ window: -16 }),
  ArrowRight: () => adjust({ window: 16 }),
  ArrowUp: () => adjust({ level: 8 }),
  ArrowDown: () => adjust({ level: -8 }),
};

function cycleFinding() {
  if (!state.findings.length) return;
  const next = (state.findings.indexOf(answer.finding) + 1) % state.findings.length;
  choose("finding", state.findings[next]);
}

function onKey(event) {
  if ($("study").hidden || event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.target.tagName === "SELECT" && event.key !== "Enter") return;
  const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
  if (/^[1-9]$/.test(key) && state && Number(key) <= state.confidence_levels) {
    choose("confidence", Number(key));
  } else if (KEYS[key] && state) {
    KEYS[key]();
  } else {
    return;
  }
  event.preventDefault();
}

document.addEventListener("DOMContentLoaded", () => {
  $("signin-form").addEventListener("submit", signIn);
  for (const button of document.querySelectorAll("#calls button")) {
    button.addEventListener("click", () => choose("call", button.dataset.call));
  }
  $("finding").addEventListener("change", (event) => choose("finding", event.target.value || null));
  $("next").addEventListener("click", submit);
  $("back").addEventListener("click", () => load(state.position - 1));
  $("signout").addEventListener("click", async () => { await api("/api/logout", {}); showSignIn(); });
  $("viewer").addEventListener("mousedown", startDrag);
  window.addEventListener("mousemove", moveDrag);
  window.addEventListener("mouseup", () => { drag = null; });
  $("viewer").addEventListener("wheel", (event) => { event.preventDefault(); adjust({ zoom: event.deltaY < 0 ? 1.1 : 0.9 }); },
    { passive: false });
  window.addEventListener("resize", () => { if (picture) fit(); });
  document.addEventListener("keydown", onKey);
  load().catch((error) => showSignIn(error.message === "sign in with your session code" ? "" : error.message));
});
