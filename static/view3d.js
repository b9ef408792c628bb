// The photo in 3D: on request, the page sends the shown photo again for output=mesh (GLB)
// and output=pointcloud (PLY), draws the mesh with three.js and offers both files. Orbit with
// the mouse or touch (OrbitControls), or the keyboard once the view has focus: arrows move,
// Shift+arrows turn, + and - zoom. The camera starts where the photo was taken, so the first
// frame looks like the photo itself.
//
// app.js announces each photo with two events on document: "depth:started" (a new photo is
// on its way: forget the old one) and "depth:shown" (detail: {file, baseName}).

import * as THREE from "./vendor/three/three.module.js";
import { OrbitControls } from "./vendor/three/OrbitControls.js";
import { explain } from "./upload.js";

const GLB_MAGIC = 0x46546c67;
const CHUNK_JSON = 0x4e4f534a;
const CHUNK_BIN = 0x004e4942;
const ZOOM_STEP = 0.15; // share of the distance to the target per + or - key

const $ = (id) => document.getElementById(id);
const section = $("view3d");
const ui = {
  button: $("show-3d"),
  status: $("view3d-status"),
  canvas: $("canvas3d"),
  ply: $("download-ply"),
  glb: $("download-glb"),
};

const state = { photo: null, open: false, generation: 0, abort: null, urls: [], view: null };

/** GLB bytes -> {json, bin}: the two chunks of a glTF 2.0 binary file. */
export function parseGlb(buffer) {
  const data = new DataView(buffer);
  if (data.getUint32(0, true) !== GLB_MAGIC || data.getUint32(4, true) !== 2) {
    throw new Error("not a glTF 2.0 binary file");
  }
  let offset = 12;
  let json = null;
  let bin = null;
  while (offset < data.byteLength) {
    const length = data.getUint32(offset, true);
    const type = data.getUint32(offset + 4, true);
    const body = new Uint8Array(buffer, offset + 8, length);
    if (type === CHUNK_JSON) json = JSON.parse(new TextDecoder().decode(body));
    else if (type === CHUNK_BIN) bin = body;
    offset += 8 + length;
  }
  if (!json || !bin) throw new Error("the GLB lacks its JSON or binary chunk");
  return { json, bin };
}

const COMPONENTS = { SCALAR: 1, VEC2: 2, VEC3: 3 };
const ARRAYS = { 5126: Float32Array, 5125: Uint32Array };

function accessorArray({ json, bin }, index) {
  const accessor = json.accessors[index];
  const view = json.bufferViews[accessor.bufferView];
  const Type = ARRAYS[accessor.componentType];
  const start = bin.byteOffset + (view.byteOffset || 0) + (accessor.byteOffset || 0);
  // The writer aligns every view to 4 bytes, so the typed array can view the buffer in place.
  return new Type(bin.buffer, start, accessor.count * COMPONENTS[accessor.type]);
}

async function textureOf(glb) {
  const image = glb.json.images[glb.json.textures[0].source];
  const view = glb.json.bufferViews[image.bufferView];
  const bytes = glb.bin.subarray(view.byteOffset || 0, (view.byteOffset || 0) + view.byteLength);
  const bitmap = await createImageBitmap(new Blob([bytes], { type: image.mimeType }));
  const texture = new THREE.Texture(bitmap);
  texture.flipY = false; // glTF: uv (0, 0) is the top-left corner of the image
  texture.colorSpace = THREE.SRGBColorSpace;
  texture.needsUpdate = true;
  return texture;
}

/** The mesh of a GLB made by /predict?output=mesh, with its camera, as three.js objects. */
async function sceneOf(buffer) {
  const glb = parseGlb(buffer);
  const primitive = glb.json.meshes[0].primitives[0];
  const geometry = new THREE.BufferGeometry();
  geometry.setAttribute("position", new THREE.BufferAttribute(accessorArray(glb, primitive.attributes.POSITION), 3));
  geometry.setAttribute("uv", new THREE.BufferAttribute(accessorArray(glb, primitive.attributes.TEXCOORD_0), 2));
  const texture = await textureOf(glb);
  let object;
  if (primitive.indices !== undefined) {
    geometry.setIndex(new THREE.BufferAttribute(accessorArray(glb, primitive.indices), 1));
    object = new THREE.Mesh(geometry, new THREE.MeshBasicMaterial({ map: texture, side: THREE.DoubleSide }));
  } else {
    object = new THREE.Points(geometry, new THREE.PointsMaterial({ map: texture, size: 2, sizeAttenuation: false }));
  }
  const bounds = glb.json.accessors[primitive.attributes.POSITION];
  const lens = glb.json.cameras[0].perspective;
  return {
    object,
    texture,
    yfovDeg: THREE.MathUtils.radToDeg(lens.yfov),
    aspect: lens.aspectRatio,
    znear: lens.znear,
    zfar: lens.zfar,
    centreZ: (bounds.min[2] + bounds.max[2]) / 2,
    triangles: primitive.indices !== undefined ? glb.json.accessors[primitive.indices].count / 3 : 0,
  };
}

function releaseUrls() {
  for (const url of state.urls) URL.revokeObjectURL(url);
  state.urls = [];
}

function offer(link, buffer, type, name) {
  const url = URL.createObjectURL(new Blob([buffer], { type }));
  state.urls.push(url);
  link.href = url;
  link.download = name;
  link.hidden = false;
}

/** One renderer for the page's life: a WebGL context is costly, and browsers cap their number. */
function viewer() {
  if (state.view) return state.view;
  const renderer = new THREE.WebGLRenderer({ canvas: ui.canvas, antialias: true });
  renderer.setPixelRatio(window.devicePixelRatio || 1);
  const camera = new THREE.PerspectiveCamera(50, 1, 0.1, 100);
  const controls = new OrbitControls(camera, ui.canvas);
  controls.listenToKeyEvents(ui.canvas);
  const view = { renderer, camera, controls, scene: new THREE.Scene(), shown: null };
  view.scene.background = new THREE.Color(0x111111);
  const draw = () => {
    renderer.render(view.scene, camera);
    if (view.shown) ui.canvas.dataset.frames = String(Number(ui.canvas.dataset.frames || 0) + 1);
  };
  view.draw = draw;
  controls.addEventListener("change", draw);
  ui.canvas.addEventListener("keydown", (event) => {
    if (event.key !== "+" && event.key !== "=" && event.key !== "-") return;
    event.preventDefault();
    const toTarget = controls.target.clone().sub(camera.position);
    const step = event.key === "-" ? -ZOOM_STEP : ZOOM_STEP;
    camera.position.addScaledVector(toTarget, step);
    controls.update(); // fires "change", which draws
  });
  new ResizeObserver(() => fit(view)).observe(ui.canvas);
  state.view = view;
  return view;
}

function fit(view) {
  const width = ui.canvas.clientWidth;
  const height = ui.canvas.clientHeight;
  if (!width || !height) return;
  view.renderer.setSize(width, height, false);
  view.camera.aspect = width / height;
  view.camera.updateProjectionMatrix();
  view.draw();
}

function show(view, built) {
  if (view.shown) {
    view.scene.remove(view.shown.object);
    view.shown.object.geometry.dispose();
    view.shown.object.material.dispose();
    view.shown.texture.dispose();
  }
  view.shown = built;
  view.scene.add(built.object);
  // The photo's shape, as wide as fits both the page and 75 % of the window's height.
  ui.canvas.style.aspectRatio = String(built.aspect);
  ui.canvas.style.width = `min(100%, calc(75vh * ${built.aspect}))`;
  const { camera, controls } = view;
  camera.fov = built.yfovDeg;
  camera.near = built.znear;
  camera.far = built.zfar * 2; // room to orbit out without clipping the far side
  camera.position.set(0, 0, 0);
  controls.target.set(0, 0, built.centreZ);
  controls.maxDistance = built.zfar * 2;
  controls.update();
  ui.canvas.hidden = false;
  fit(view);
  ui.canvas.dataset.triangles = String(built.triangles);
}

async function post(params, signal) {
  const url = new URL(section.dataset.predictUrl, window.location.href);
  for (const [name, value] of Object.entries(params)) url.searchParams.set(name, value);
  const form = new FormData();
  form.append("image", state.photo.file, state.photo.file.name || "photo");
  let response;
  try {
    response = await fetch(url, { method: "POST", body: form, signal });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new Error("The depth service could not be reached. Check the connection and try again.");
  }
  const buffer = await response.arrayBuffer();
  if (!response.ok) throw new Error(explain(response.status, buffer));
  return buffer;
}

async function load() {
  if (!state.photo) return;
  const generation = ++state.generation;
  state.abort?.abort();
  const abort = new AbortController();
  state.abort = abort;
  const { baseName } = state.photo;
  ui.button.disabled = true;
  ui.status.textContent = "Building the 3D mesh…";
  delete section.dataset.ready;
  try {
    const glb = await post({ output: "mesh", format: "glb" }, abort.signal);
    if (generation !== state.generation) return;
    offer(ui.glb, glb, "model/gltf-binary", `${baseName}.glb`);
    let view = null;
    try {
      view = viewer();
    } catch {
      ui.status.textContent = "This browser cannot draw 3D (no WebGL); the files below still open in a 3D viewer.";
    }
    if (view) show(view, await sceneOf(glb));
    const ply = await post({ output: "pointcloud", format: "ply" }, abort.signal);
    if (generation !== state.generation) return;
    offer(ui.ply, ply, "application/x-ply", `${baseName}.ply`);
    if (view) {
      ui.status.textContent =
        "Drag to turn, right-drag or two fingers to move, scroll or pinch to zoom; " +
        "on the keyboard: arrows move, Shift+arrows turn, + and − zoom.";
    }
    section.dataset.ready = "true";
  } catch (error) {
    if (error.name === "AbortError" || generation !== state.generation) return;
    ui.status.textContent = error.message;
  } finally {
    if (generation === state.generation) ui.button.disabled = false;
  }
}

function reset() {
  state.generation++;
  state.abort?.abort();
  state.photo = null;
  releaseUrls();
  for (const link of [ui.ply, ui.glb]) {
    link.hidden = true;
    link.removeAttribute("href");
  }
  ui.canvas.hidden = true;
  ui.status.textContent = "";
  delete section.dataset.ready;
}

ui.button.addEventListener("click", () => {
  state.open = true;
  ui.button.setAttribute("aria-pressed", "true");
  load();
});
document.addEventListener("depth:started", reset);
document.addEventListener("depth:shown", (event) => {
  reset();
  state.photo = event.detail;
  if (state.open) load(); // the view stays open from one photo to the next
});
