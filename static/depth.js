// Depth maps in the browser: read the server's float32 .npy, colour it as the server's heatmap
// does (OpenCV min-max to 0..255, then a 256-entry colour table), write the 16-bit PNG the API
// would give, and read the relative depth at one point.

/** A parsed (height, width) little-endian float32 .npy, with its range. */
export function parseNpy(buffer) {
  const bytes = new Uint8Array(buffer);
  const magic = String.fromCharCode(...bytes.subarray(1, 6));
  if (bytes[0] !== 0x93 || magic !== "NUMPY") throw new Error("the depth answer is not a .npy file");
  const view = new DataView(buffer);
  const version1 = bytes[6] === 1;
  const headerStart = version1 ? 10 : 12;
  const headerLength = version1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const header = new TextDecoder().decode(bytes.subarray(headerStart, headerStart + headerLength));
  const shape = header.match(/'shape':\s*\((\d+),\s*(\d+)\)/);
  if (!header.includes("'<f4'") || header.includes("True") || !shape) {
    throw new Error("the depth answer is not a 2-D float32 array");
  }
  const height = Number(shape[1]);
  const width = Number(shape[2]);
  const start = headerStart + headerLength;
  const values = new Float32Array(buffer.slice(start, start + width * height * 4));
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < values.length; i++) {
    const value = values[i];
    if (value < min) min = value;
    if (value > max) max = value;
  }
  return { values, width, height, min, max, bytes: buffer };
}

// OpenCV rounds to nearest, ties to even (cvRound).
function roundHalfEven(x) {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Levels 0..top as cv2.normalize(NORM_MINMAX) makes them; a constant map is all zeros. */
function levels(depth, top, out) {
  const span = depth.max - depth.min;
  if (!(span > 0) || !Number.isFinite(span)) return out.fill(0);
  // OpenCV converts float32 with float32 scale and shift.
  const scale = Math.fround(top / span);
  const shift = Math.fround(-depth.min * scale);
  const { values } = depth;
  for (let i = 0; i < values.length; i++) {
    const level = roundHalfEven(Math.fround(values[i] * scale) + shift);
    out[i] = level < 0 ? 0 : level > top ? top : level;
  }
  return out;
}

/** The heatmap as RGBA ImageData; ``table`` holds 256 RGB entries (768 bytes). */
export function colourize(depth, table) {
  const image = new ImageData(depth.width, depth.height);
  const indices = levels(depth, 255, new Uint8Array(depth.values.length));
  const pixels = image.data;
  for (let i = 0, p = 0; i < indices.length; i++, p += 4) {
    const entry = indices[i] * 3;
    pixels[p] = table[entry];
    pixels[p + 1] = table[entry + 1];
    pixels[p + 2] = table[entry + 2];
    pixels[p + 3] = 255;
  }
  return image;
}

/** 0 at the farthest point of this photo, 1 at the nearest (MiDaS: larger = nearer). */
export function relativeDepthAt(depth, x, y) {
  const span = depth.max - depth.min;
  const value = depth.values[y * depth.width + x];
  return span > 0 ? (value - depth.min) / span : 0;
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes) {
  let c = 0xffffffff;
  for (const byte of bytes) c = CRC_TABLE[(c ^ byte) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type, data) {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  out.set(new TextEncoder().encode(type), 4);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

/** The 16-bit grayscale PNG that /predict?output=depth&format=png16 gives, as a Blob. */
export async function encodePng16(depth) {
  const { width, height } = depth;
  const level16 = levels(depth, 65535, new Uint16Array(depth.values.length));
  const rowBytes = 1 + width * 2; // filter type 0, then big-endian samples
  const raw = new Uint8Array(rowBytes * height);
  const view = new DataView(raw.buffer);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) view.setUint16(y * rowBytes + 1 + x * 2, level16[y * width + x]);
  }
  const zlib = new Blob([raw]).stream().pipeThrough(new CompressionStream("deflate"));
  const compressed = new Uint8Array(await new Response(zlib).arrayBuffer());
  const header = new Uint8Array(13);
  const headerView = new DataView(header.buffer);
  headerView.setUint32(0, width);
  headerView.setUint32(4, height);
  header.set([16, 0, 0, 0, 0], 8); // 16 bits, grayscale, deflate, no filter, no interlace
  const signature = new Uint8Array([137, 80, 78, 71, 13, 10, 26, 10]);
  const parts = [signature, chunk("IHDR", header), chunk("IDAT", compressed), chunk("IEND", new Uint8Array())];
  return new Blob(parts, { type: "image/png" });
}
