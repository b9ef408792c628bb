// Videos and zips of photos become jobs on the server (POST /jobs): a progress bar while the
// upload and then the work go on, the video plays here when done, a zip downloads. The job's id
// is kept in localStorage, so a reload (or coming back later) finds it again.
//
// It takes a drop before the photo page does (a capture listener): photos still go to /predict
// as before; a video or a zip, or several photos at once, go here.

const $ = (id) => document.getElementById(id);
const section = $("jobs");
const STORE = "midas-depth-job";
const POLL_MS = 1000;
const ui = {
  input: $("job-file"),
  box: $("job"),
  status: $("job-status"),
  progress: $("job-progress"),
  cancel: $("job-cancel"),
  video: $("job-video"),
  download: $("job-download"),
  error: $("job-error"),
};
let current = null; // {id, statusUrl, resultUrl, kind, name}
let resultUrl = null;

const isZip = (file) => file.type === "application/zip" || /\.zip$/i.test(file.name);
const isVideo = (file) => file.type.startsWith("video/");

/** Files that make a job rather than one /predict call: a video, a zip, or several photos. */
export function wantsJob(files) {
  const list = Array.from(files || []);
  return list.some((file) => isZip(file) || isVideo(file)) || list.length > 1;
}

function authHeaders() {
  // The page's API-key field, when the server needs keys and the page has one.
  const key = $("api-key")?.value?.trim();
  return key ? { "X-API-Key": key } : {};
}

function say(text, fraction) {
  ui.box.hidden = false;
  ui.status.textContent = text;
  if (fraction == null) ui.progress.removeAttribute("value");
  else ui.progress.value = Math.max(0, Math.min(1, fraction));
}

function fail(message) {
  ui.error.textContent = message;
  ui.error.hidden = false;
  ui.cancel.hidden = true;
}

function errorText(status, text) {
  try {
    const message = JSON.parse(text)?.error?.message;
    if (message) return `${message} (status ${status})`;
  } catch {
    // not JSON: a proxy's page
  }
  return `The server answered status ${status}.`;
}

function remember(job) {
  current = job;
  if (job) localStorage.setItem(STORE, JSON.stringify(job));
  else localStorage.removeItem(STORE);
}

function reset() {
  ui.error.hidden = true;
  ui.video.hidden = true;
  ui.download.hidden = true;
  ui.cancel.hidden = false;
  if (resultUrl) URL.revokeObjectURL(resultUrl);
  resultUrl = null;
  ui.video.removeAttribute("src");
}

/** POST the files with upload progress (XMLHttpRequest: fetch cannot report it). */
function upload(files) {
  const body = new FormData();
  for (const file of files) body.append("file", file, file.name);
  const colormap = $("colormap")?.value;
  const query = colormap ? `?colormap=${encodeURIComponent(colormap)}` : "";
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("POST", section.dataset.jobsUrl + query);
    for (const [name, value] of Object.entries(authHeaders())) request.setRequestHeader(name, value);
    request.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) say("Uploading…", event.loaded / event.total);
    });
    request.addEventListener("load", () => {
      if (request.status === 202) resolve(JSON.parse(request.responseText));
      else reject(new Error(errorText(request.status, request.responseText)));
    });
    request.addEventListener("error", () => reject(new Error("The upload failed: no connection.")));
    request.send(body);
  });
}

export async function submit(files) {
  reset();
  const list = Array.from(files);
  const kind = list.some(isVideo) ? "video" : "photos";
  say(`Uploading ${list.length === 1 ? list[0].name : `${list.length} files`}…`, 0);
  try {
    const job = await upload(list);
    remember({ id: job.id, statusUrl: job.status_url, resultUrl: job.result_url, kind, name: list[0].name });
    follow();
  } catch (error) {
    fail(error.message);
  }
}

function describe(body) {
  const { done, total } = body.progress || {};
  const count = total ? `${done} of ${total}` : `${done || 0}`;
  const unit = current.kind === "video" ? "frame steps" : "photos";
  const eta = body.eta_s ? `, about ${Math.ceil(body.eta_s)} s left` : "";
  if (body.status === "queued") return ["Waiting for a worker…", null];
  return [`Working: ${count} ${unit}${eta}.`, total ? done / total : null];
}

async function follow() {
  const job = current;
  while (job === current) {
    let response;
    try {
      response = await fetch(job.statusUrl, { headers: authHeaders() });
    } catch {
      say("Connection lost; retrying…", null);
      await new Promise((r) => setTimeout(r, POLL_MS * 3));
      continue;
    }
    if (response.status === 404) {
      remember(null);
      fail("This job is gone: it expired, or was deleted.");
      return;
    }
    if (!response.ok) {
      say(errorText(response.status, await response.text()), null);
      await new Promise((r) => setTimeout(r, POLL_MS * 5));
      continue;
    }
    const body = await response.json();
    if (body.status === "finished") return showResult(job, body);
    if (body.status === "failed" || body.status === "canceled") {
      remember(null);
      say(`The job ${body.status}.`, 0);
      fail(body.error || `The job ${body.status}.`);
      return;
    }
    const [text, fraction] = describe(body);
    say(text, fraction);
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

async function showResult(job, body) {
  ui.cancel.hidden = true;
  say("Done. Fetching the result…", 1);
  const response = await fetch(job.resultUrl, { headers: authHeaders() });
  if (!response.ok) {
    fail(errorText(response.status, await response.text()));
    return;
  }
  const blob = await response.blob();
  resultUrl = URL.createObjectURL(blob);
  const stem = job.name.replace(/\.[^.]*$/, "") || "depth";
  if (job.kind === "video" && blob.type === "video/mp4") {
    ui.video.src = resultUrl;
    ui.video.hidden = false;
    ui.download.download = `${stem}-depth.mp4`;
    say("Done: the depth video.", 1);
  } else {
    const summary = body.summary || {};
    const skipped = (summary.failed || 0) + (summary.skipped || 0);
    ui.download.download = job.kind === "video" ? `${stem}-depth.mkv` : `${stem}-depth.zip`;
    say(`Done: ${summary.ok ?? ""} outputs${skipped ? `, ${skipped} files not used (see report.json)` : ""}.`, 1);
  }
  ui.download.href = resultUrl; // before the click below: without it the click saves nothing
  ui.download.hidden = false;
  // Save a zip once, when it is first done; a later reload shows the link without saving again.
  if (!job.saved && (job.kind !== "video" || blob.type !== "video/mp4")) ui.download.click();
  remember({ ...job, saved: true });
}

async function cancel() {
  if (!current) return;
  const job = current;
  const response = await fetch(job.statusUrl, { method: "DELETE", headers: authHeaders() });
  if (response.status === 404) remember(null);
  say("Canceling…", null);
}

function setUp() {
  if (!section) return;
  section.hidden = false;
  ui.cancel.addEventListener("click", cancel);
  ui.input.addEventListener("change", () => {
    const files = Array.from(ui.input.files);
    ui.input.value = "";
    if (files.length) submit(files);
  });
  // Before the photo page's own drop handler (bubbling on document): keep photos to it.
  document.addEventListener(
    "drop",
    (event) => {
      const files = event.dataTransfer?.files;
      if (!wantsJob(files)) return;
      event.preventDefault();
      event.stopImmediatePropagation();
      $("dropzone")?.classList.remove("dragging");
      submit(files);
    },
    { capture: true },
  );
  const saved = localStorage.getItem(STORE);
  if (saved) {
    try {
      current = JSON.parse(saved);
      say("Finding your job again…", null);
      follow();
    } catch {
      remember(null);
    }
  }
}

setUp();
