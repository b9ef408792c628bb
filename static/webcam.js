// Webcam mode: one frame at a time through the same path as a chosen photo, never more than one
// request in flight, at most one frame every ``intervalMs``; the achieved frame rate reported.

/** Start the camera into ``video``; returns ``stop()``. ``send(file)`` resolves when shown. */
export async function startWebcam(video, { send, onRate, intervalMs }) {
  const stream = await navigator.mediaDevices.getUserMedia({
    video: { width: { ideal: 640 }, height: { ideal: 480 } },
    audio: false,
  });
  video.srcObject = stream;
  await video.play();
  const canvas = document.createElement("canvas");
  const shown = [];
  let running = true;
  let timer = null;

  async function frame() {
    if (!running) return;
    const began = performance.now();
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.85));
    const ok = running && (await send(new File([blob], "webcam.jpg", { type: "image/jpeg" })));
    if (!running || !ok) return;
    const now = performance.now();
    shown.push(now);
    while (shown.length && now - shown[0] > 5000) shown.shift();
    if (shown.length > 1) onRate(((shown.length - 1) * 1000) / (now - shown[0]));
    timer = setTimeout(frame, Math.max(0, intervalMs - (now - began)));
  }
  frame();

  return function stop() {
    running = false;
    clearTimeout(timer);
    for (const track of stream.getTracks()) track.stop();
    video.srcObject = null;
  };
}
