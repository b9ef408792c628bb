// One photo to /predict with XMLHttpRequest (fetch cannot report upload progress); refusals
// become sentences a person can act on.

/** ``Server-Timing: decode;dur=1.2, infer;dur=80`` -> [["decode", 1.2], ["infer", 80]]. */
export function parseServerTiming(header) {
  if (!header) return [];
  return header.split(",").flatMap((part) => {
    const [name, ...params] = part.trim().split(";");
    const duration = params.map((p) => p.trim()).find((p) => p.startsWith("dur="));
    return name && duration ? [[name, Number(duration.slice(4))]] : [];
  });
}

function serverMessage(response) {
  try {
    const body = JSON.parse(new TextDecoder().decode(response));
    return typeof body?.error?.message === "string" ? body.error.message : "";
  } catch {
    return "";
  }
}

/** Plain words for a refused request, from its status and the JSON error body. */
export function explain(status, response, { keySent = false } = {}) {
  const message = serverMessage(response);
  const said = message ? ` (the server says: ${message})` : "";
  if (status === 401) {
    return keySent
      ? "The API key was not accepted. Check it, enter it again in the “API key” field and choose the photo again."
      : "This server needs an API key. Enter it in the “API key” field and choose the photo again.";
  }
  if (status === 503 || status === 502 || status === 504) {
    return `The server is busy or still starting${said}. Please try again in a moment.`;
  }
  if (status === 429) return `Too many requests right now${said}. Please wait a moment.`;
  if (status === 413) return `This photo is too large${said}.`;
  if (status === 415 || status === 400) {
    return `This file could not be used as a photo${said}. Try a JPEG, PNG or WebP picture.`;
  }
  return `Something went wrong on the server (status ${status})${said}. Please try again.`;
}

/**
 * POST ``file`` to ``url``; resolves to {buffer, timings}, rejects with an Error whose message
 * is for people. ``onUploadProgress(fraction)`` while sending, ``onUploaded()`` once sent;
 * ``apiKey`` goes out as ``Authorization: Bearer``.
 * Returns {promise, abort}.
 */
export function sendPhoto(url, file, { onUploadProgress, onUploaded, apiKey = "" }) {
  const xhr = new XMLHttpRequest();
  const promise = new Promise((resolve, reject) => {
    xhr.open("POST", url);
    if (apiKey) {
      try {
        xhr.setRequestHeader("Authorization", `Bearer ${apiKey}`);
      } catch {
        reject(new Error("This API key has characters a key cannot have. Check it and enter it again."));
        return;
      }
    }
    xhr.responseType = "arraybuffer";
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onUploadProgress(event.loaded / event.total);
    });
    xhr.upload.addEventListener("load", () => onUploaded());
    xhr.addEventListener("load", () => {
      if (xhr.status === 200) {
        resolve({
          buffer: xhr.response,
          timings: parseServerTiming(xhr.getResponseHeader("Server-Timing")),
        });
      } else {
        reject(new Error(explain(xhr.status, xhr.response, { keySent: Boolean(apiKey) })));
      }
    });
    xhr.addEventListener("error", () => {
      reject(new Error("The depth service could not be reached. Check the connection and try again."));
    });
    xhr.addEventListener("abort", () => reject(new DOMException("replaced by a newer photo", "AbortError")));
    const form = new FormData();
    form.append("image", file, file.name || "photo");
    xhr.send(form);
  });
  return { promise, abort: () => xhr.abort() };
}
