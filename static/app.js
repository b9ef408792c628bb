// The upload page with JavaScript: choose, drop or paste a photo and it is sent at once; the
// depth comes back once as float32 .npy and is coloured here, so changing the colormap, the
// view, reading a point or downloading never asks the server again.

import { colourize, encodePng16, parseNpy, relativeDepthAt } from "./depth.js";
import { sendPhoto } from "./upload.js";
import { startWebcam } from "./webcam.js";
import "./jobs.js"; // videos and zips as jobs: its own module, it registers itself
import "./view3d.js"; // the 3D view: its own module, it listens for the shown depth map

const $ = (id) => document.getElementById(id);
const form = $("upload");
const input = $("image");
const dropzone = $("dropzone");
const select = $("colormap");
const ui = {
  result: $("result"),
  progress: $("progress"),
  statusText: $("status-text"),
  error: $("error"),
  output: $("output"),
  compare: $("compare"),
  photo: $("photo"),
  heat: $("heat"),
  split: $("split"),
  legend: $("legend"),
  probe: $("probe"),
  timings: $("timings"),
  downloads: {
    heatmap: $("download-heatmap"),
    png16: $("download-png16"),
    npy: $("download-npy"),
  },
};
const maxUploadBytes = Number(form.dataset.maxUploadMb) * 1024 * 1024;
// With API keys on, the key typed here lives in this tab's sessionStorage only: gone when the
// tab closes, never in a URL, sent as Authorization: Bearer.
const KEY_STORAGE = "midas-api-key";
const keyInput = $("api-key");

function apiKey() {
  return keyInput ? keyInput.value.trim() : "";
}

function setUpKey() {
  if (!keyInput) return;
  keyInput.value = sessionStorage.getItem(KEY_STORAGE) || "";
  keyInput.addEventListener("change", rememberKey);
}

function rememberKey() {
  if (!keyInput) return;
  if (apiKey()) sessionStorage.setItem(KEY_STORAGE, apiKey());
  else sessionStorage.removeItem(KEY_STORAGE);
}
const PROBE_HINT = ui.probe.textContent;

const state = {
  depth: null,
  baseName: "photo",
  request: null,
  generation: 0,
  urls: new Set(),
  stopWebcam: null,
};
const WEBCAM_INTERVAL_MS = 500;
const tables = fetch(form.dataset.colormapsUrl)
  .then((response) => response.json())
  .then((encoded) =>
    Object.fromEntries(
      Object.entries(encoded).map(([name, b64]) => [name, Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))]),
    ),
  );

function objectUrl(blob) {
  const url = URL.createObjectURL(blob);
  state.urls.add(url);
  return url;
}

function releaseUrls() {
  for (const url of state.urls) URL.revokeObjectURL(url);
  state.urls.clear();
}

/** "cat.photo.JPG" -> "cat.photo"; anything odd becomes "-". */
function baseNameOf(file) {
  const stem = (file.name || "photo").replace(/\.[^.]*$/, "");
  return stem.replace(/[^\w.-]+/g, "-").replace(/^[.-]+/, "") || "photo";
}

function showError(message) {
  ui.progress.hidden = true;
  ui.statusText.textContent = "";
  ui.error.textContent = message;
  ui.error.hidden = false;
  ui.output.hidden = true;
}

function setStatus(text, progress) {
  ui.statusText.textContent = text;
  ui.progress.hidden = progress === null;
  if (progress === undefined) ui.progress.removeAttribute("value"); // indeterminate
  else if (progress !== null) ui.progress.value = progress;
}

function canvasBlob(imageData) {
  const canvas = document.createElement("canvas");
  canvas.width = imageData.width;
  canvas.height = imageData.height;
  canvas.getContext("2d").putImageData(imageData, 0, 0);
  return new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
}

function drawLegend(table) {
  const ramp = new ImageData(256, 1);
  for (let i = 0; i < 256; i++) ramp.data.set([table[3 * i], table[3 * i + 1], table[3 * i + 2], 255], 4 * i);
  ui.legend.getContext("2d").putImageData(ramp, 0, 0);
}

/** Colour the fetched depth with the selected colormap; no request to the server. */
async function recolour() {
  const table = (await tables)[select.value];
  drawLegend(table);
  if (!state.depth) return;
  const blob = await canvasBlob(colourize(state.depth, table));
  const url = objectUrl(blob);
  const previous = ui.heat.src;
  ui.heat.src = url;
  await ui.heat.decode();
  if (previous.startsWith("blob:") && previous !== ui.photo.src) {
    URL.revokeObjectURL(previous);
    state.urls.delete(previous);
  }
  ui.heat.dataset.colormap = select.value;
  ui.downloads.heatmap.href = url;
  ui.downloads.heatmap.download = `${state.baseName}-depth.png`;
}

function showTimings(serverTimings, uploadMs, totalMs) {
  const server = serverTimings.map(([name, ms]) => `${name} ${ms.toFixed(0)} ms`).join(" · ");
  ui.timings.textContent =
    `Server: ${server || "no timings sent"}. ` +
    `In this browser: sent in ${uploadMs.toFixed(0)} ms, heatmap shown ${totalMs.toFixed(0)} ms after choosing.`;
}

/**
 * Send ``file`` and show its depth; resolves true once shown. A webcam frame (``live``) keeps
 * the previous picture on screen until the new one is ready, so the view does not flicker.
 */
async function start(file, { live = false } = {}) {
  const chosenAt = performance.now();
  const generation = ++state.generation;
  state.request?.abort();
  ui.result.hidden = false;
  ui.error.hidden = true;
  if (!live) {
    state.stopWebcam?.();
    releaseUrls();
    state.depth = null;
    ui.timings.textContent = "";
    ui.probe.textContent = PROBE_HINT;
    delete ui.result.dataset.elapsedMs;
    document.dispatchEvent(new CustomEvent("depth:started")); // for view3d.js
  }
  if (file.size > maxUploadBytes) {
    showError(
      `This photo is ${(file.size / 1048576).toFixed(1)} MB; the limit is ${form.dataset.maxUploadMb} MB. ` +
        "Try a smaller one.",
    );
    return false;
  }
  if (file.type && !file.type.startsWith("image/")) {
    showError(`“${file.name}” is not a picture (${file.type}). Choose a JPEG, PNG or WebP photo.`);
    return false;
  }
  if (!live) {
    state.baseName = baseNameOf(file);
    ui.photo.alt = `Your photo ${file.name || ""}`.trim();
    ui.photo.src = objectUrl(file);
    ui.heat.hidden = true;
    ui.heat.removeAttribute("src");
    ui.output.hidden = false;
    ui.downloads.heatmap.parentElement.hidden = true;
    setStatus(`Sending ${file.name || "the photo"}…`, 0);
  }
  let uploadedAt = chosenAt;
  if (form.dataset.keysRequired === "true" && !apiKey()) {
    showError("This server needs an API key. Enter it in the “API key” field and choose the photo again.");
    keyInput?.focus();
    return false;
  }
  rememberKey();
  const request = sendPhoto(form.dataset.predictUrl, file, {
    apiKey: apiKey(),
    onUploadProgress: (fraction) => live || setStatus(`Sending ${file.name || "the photo"}…`, fraction * 100),
    onUploaded: () => {
      uploadedAt = performance.now();
      if (!live) setStatus("Computing depth…", undefined);
    },
  });
  state.request = request;
  try {
    const { buffer, timings } = await request.promise;
    if (generation !== state.generation) return false;
    state.depth = parseNpy(buffer);
    if (live) {
      releaseUrls();
      state.baseName = baseNameOf(file);
      ui.photo.alt = "Webcam frame";
      ui.photo.src = objectUrl(file);
      await ui.photo.decode();
      ui.output.hidden = false;
    }
    await recolour();
    if (generation !== state.generation) return false;
    ui.heat.hidden = false;
    const elapsed = performance.now() - chosenAt;
    ui.result.dataset.elapsedMs = elapsed.toFixed(1);
    setStatus(`Depth of ${file.name || "your photo"}: bright is near, dark is far.`, null);
    showTimings(timings, uploadedAt - chosenAt, elapsed);
    await prepareDownloads(buffer);
    if (!live) document.dispatchEvent(new CustomEvent("depth:shown", { detail: { file, baseName: state.baseName } }));
    return true;
  } catch (error) {
    if (generation !== state.generation || error.name === "AbortError") return false;
    state.stopWebcam?.();
    showError(error.message);
    return false;
  }
}

function setUpWebcam() {
  const button = $("webcam");
  const rate = $("webcam-rate");
  if (!navigator.mediaDevices?.getUserMedia) {
    button.hidden = true;
    return;
  }
  button.addEventListener("click", async () => {
    if (state.stopWebcam) {
      state.stopWebcam();
      return;
    }
    button.setAttribute("aria-pressed", "true");
    button.textContent = "Stop the webcam";
    rate.textContent = "Starting the webcam…";
    try {
      const stop = await startWebcam($("camera"), {
        send: (file) => start(file, { live: true }),
        onRate: (fps) => {
          rate.textContent = `Webcam: ${fps.toFixed(1)} frames/s`;
          rate.dataset.fps = fps.toFixed(2);
        },
        intervalMs: WEBCAM_INTERVAL_MS,
      });
      state.stopWebcam = () => {
        stop();
        state.stopWebcam = null;
        button.setAttribute("aria-pressed", "false");
        button.textContent = "Use the webcam";
        rate.textContent = "";
      };
    } catch (error) {
      button.setAttribute("aria-pressed", "false");
      button.textContent = "Use the webcam";
      rate.textContent = "";
      ui.result.hidden = false;
      showError(`The webcam could not be started (${error.message}).`);
    }
  });
}

async function prepareDownloads(npyBytes) {
  const { png16, npy } = ui.downloads;
  npy.href = objectUrl(new Blob([npyBytes], { type: "application/octet-stream" }));
  npy.download = `${state.baseName}-depth.npy`;
  png16.href = objectUrl(await encodePng16(state.depth));
  png16.download = `${state.baseName}-depth16.png`;
  ui.downloads.heatmap.parentElement.hidden = false;
}

function probe(event) {
  const { depth } = state;
  if (!depth || !(event.target instanceof HTMLImageElement)) return;
  const box = event.target.getBoundingClientRect();
  const x = Math.floor(((event.clientX - box.left) / box.width) * depth.width);
  const y = Math.floor(((event.clientY - box.top) / box.height) * depth.height);
  if (x < 0 || y < 0 || x >= depth.width || y >= depth.height) return;
  const relative = relativeDepthAt(depth, x, y);
  ui.probe.textContent =
    `At (${x}, ${y}): relative depth ${relative.toFixed(2)} ` +
    "(1 = nearest point of this photo, 0 = farthest).";
}

function firstImage(files) {
  return Array.from(files || []).find((file) => file.type.startsWith("image/")) || files?.[0];
}

function enhance() {
  for (const element of document.querySelectorAll(".with-js")) {
    if (element !== ui.result) element.hidden = false;
  }
  for (const element of document.querySelectorAll(".without-js")) element.hidden = true;
  dropzone.classList.add("active");
  dropzone.tabIndex = 0;
  dropzone.setAttribute("role", "button");
  input.tabIndex = -1;

  input.addEventListener("change", () => {
    const file = input.files[0];
    input.value = ""; // choosing the same file again starts again
    if (file) start(file);
  });
  form.addEventListener("submit", (event) => event.preventDefault());
  dropzone.addEventListener("click", (event) => {
    if (event.target !== input && !event.target.closest("label")) input.click();
  });
  dropzone.addEventListener("keydown", (event) => {
    if (event.target === dropzone && (event.key === "Enter" || event.key === " ")) {
      event.preventDefault();
      input.click();
    }
  });
  document.addEventListener("dragover", (event) => {
    event.preventDefault();
    dropzone.classList.add("dragging");
  });
  document.addEventListener("dragleave", (event) => {
    if (!event.relatedTarget) dropzone.classList.remove("dragging");
  });
  document.addEventListener("drop", (event) => {
    event.preventDefault();
    dropzone.classList.remove("dragging");
    const file = firstImage(event.dataTransfer?.files);
    if (file) start(file);
  });
  document.addEventListener("paste", (event) => {
    const file = firstImage(event.clipboardData?.files);
    if (file) {
      event.preventDefault();
      start(file);
    }
  });
  for (const button of document.querySelectorAll("[data-example]")) {
    button.addEventListener("click", async () => {
      const name = button.dataset.example;
      try {
        const response = await fetch(form.dataset.examplesUrl + name);
        if (!response.ok) throw new Error(`status ${response.status}`);
        const blob = await response.blob();
        start(new File([blob], name, { type: blob.type || "image/jpeg" }));
      } catch (error) {
        ui.result.hidden = false;
        showError(`The example photo could not be loaded (${error.message}).`);
      }
    });
  }

  select.addEventListener("change", () => recolour());
  ui.split.addEventListener("input", () => ui.compare.style.setProperty("--split", `${ui.split.value}%`));
  for (const radio of document.querySelectorAll('input[name="view"]')) {
    radio.addEventListener("change", () => {
      ui.compare.classList.toggle("slider-view", radio.value === "slider" && radio.checked);
      ui.compare.classList.toggle("side-view", radio.value === "side" && radio.checked);
    });
  }
  ui.compare.addEventListener("pointermove", probe);
  ui.compare.addEventListener("pointerdown", probe);
  ui.compare.addEventListener("pointerleave", () => {
    ui.probe.textContent = PROBE_HINT;
  });
  setUpWebcam();
  setUpKey();
  recolour(); // the legend
}

enhance();
