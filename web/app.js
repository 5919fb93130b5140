// The page: photos (picked or dropped) and camera frames go through the FaceErase pipeline, all in this browser.

import { METHODS } from './anonymize.js';
import {
  ADD_SHAPES, BLUR_SIGMA_FRACTION, DEFAULT_MASK_SHAPE, DEFAULT_METHOD, DEFAULT_THRESHOLD_MODE, MASK_SHAPES,
  MIN_KEPT_IOU, MOSAIC_BLOCKS, TEMPORAL_WINDOW, THRESHOLD_MODES,
} from './constants.js';
import { applyEdits, auditRecord, boxIou, regionAt } from './edits.js';
import { ImageError, context2d, decodeImageFile, grabFrame } from './images.js';
import { findRegions } from './masks.js';
import { loadModel } from './model.js';
import { TemporalMax, eraseFound, findFaces, predict } from './pipeline.js';

const MODEL_URL = 'model.onnx';
const MODE_NAMES = { auto: 'auto', seed: '2018 rule', fixed: 'fixed' };
// The options of the selects (values from constants.js, generated from the Python package) and their labels.
const CHOICES = {
  'threshold-mode': [THRESHOLD_MODES, DEFAULT_THRESHOLD_MODE,
    { auto: 'auto (calibrated)', seed: '2018 rule (60% of the map\'s range)', fixed: 'fixed (slider)' }],
  'mask-shape': [MASK_SHAPES, DEFAULT_MASK_SHAPE, { predicted: 'as predicted', ellipse: 'ellipse', box: 'box' }],
  method: [METHODS, DEFAULT_METHOD, { fill: 'fill (from the border, blurred)', solid: 'solid colour' }],
  'add-shape': [ADD_SHAPES, ADD_SHAPES[0], { ellipse: 'ellipse in the box', box: 'the box' }],
};
// The model's inference settings that the page uses, as the audit record lists them.
const MODEL_SETTINGS = ['input_size', 'upscale', 'extra_scales', 'live_input_size', 'threshold_floor',
  'threshold_ceiling', 'dilation', 'dilation_ratio', 'min_area'];
const REGION_COLOURS = { erased: '#e53935', kept: '#2e7d32', added: '#1565c0' };
const DRAG_PX = 6; // a pointer that moves this far (CSS pixels) draws a box; less is a click

const $ = (id) => document.getElementById(id);
const canvases = { photo: $('photo'), probability: $('probability'), mask: $('mask'), result: $('result'),
  review: $('review') };
const controls = ['file', 'camera', 'threshold-mode', 'threshold-value', 'mask-shape', 'method', 'color', 'format',
  'add-shape'];

let model = null;
// {name, image, prob, networkMs, found: findFaces's result for its settings, edits: {keep: [ids], add: [boxes],
// keptBoxes: {id: the region's box when it was kept}, reset: true when new settings dropped the kept ids}}
const photos = [];
let current = null; // the photo or camera frame on show: {name, image, prob, found, edits (photos only)}
let shown = null; // the result on show (eraseFound), what a click or the record refers to
let drag = null; // the pointer pressed on the review view: {id, clientX, clientY, from: image pixel}
let camera = null; // {stream, video, context, smoother, fps}

function setState(state, message, isError = false) {
  document.body.dataset.state = state;
  $('status').textContent = message;
  $('status').classList.toggle('error', isError);
}

function options() {
  const hex = $('color').value;
  return {
    thresholdMode: $('threshold-mode').value,
    thresholdValue: Number($('threshold-value').value),
    maskShape: $('mask-shape').value,
    method: $('method').value,
    color: [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16)),
    addShape: $('add-shape').value,
  };
}

function draw(canvas, width, height, rgba) {
  canvas.width = width;
  canvas.height = height;
  canvas.getContext('2d').putImageData(new ImageData(rgba, width, height), 0, 0);
}

/** Values in [0, 1] (probabilities, or a 0/1 mask) as grey RGBA pixels. */
function gray(values) {
  const rgba = new Uint8ClampedArray(4 * values.length);
  for (let i = 0; i < values.length; i++) {
    rgba[4 * i] = rgba[4 * i + 1] = rgba[4 * i + 2] = 255 * values[i];
    rgba[4 * i + 3] = 255;
  }
  return rgba;
}

/** Post-process what is on show with the current options and its edits, and draw the views; returns the result.
 * The model's findings are computed again only when the threshold or mask settings changed. */
function render() {
  const { image, prob, edits } = current;
  const { width, height } = image;
  const settings = options();
  const key = JSON.stringify([settings.thresholdMode, settings.thresholdMode === 'fixed' ? settings.thresholdValue
    : null, settings.maskShape]);
  if (current.found?.key !== key) current.found = { key, ...findFaces(image, prob, model.settings, settings) };
  if (edits) keepOnlyTheSameRegions(edits, current.found.regions);
  const result = eraseFound(image, prob, current.found, { ...settings, keep: edits?.keep, add: edits?.add });
  shown = result;
  draw(canvases.photo, width, height, image.data);
  draw(canvases.probability, width, height, gray(prob));
  draw(canvases.mask, width, height, gray(result.mask));
  draw(canvases.result, width, height, result.anonymized.data);
  drawReview();
  listRegions();
  if ($('threshold-mode').value !== 'fixed') $('threshold-value').value = result.threshold.toFixed(2);
  $('threshold-output').textContent = result.threshold.toFixed(3);
  $('download').disabled = false;
  $('download-record').disabled = !edits;
  return result;
}

/** Kept ids stay kept while each names a model region whose box overlaps its box when kept by at least MIN_KEPT_IOU
 * (the rule of apply_edits); once one does not, every kept id is dropped (and the summary says so); added boxes
 * stay. */
function keepOnlyTheSameRegions(edits, regions) {
  const there = (id) => id <= regions.length && boxIou(regions[id - 1].box, edits.keptBoxes[id]) >= MIN_KEPT_IOU;
  if (!edits.keep.every(there)) [edits.keep, edits.keptBoxes, edits.reset] = [[], {}, true];
}

const regionStatus = (r) => (r.source === 'added' ? 'added' : r.erased ? 'erased' : 'kept');

/** The review view over the anonymized one: each region's outline and id (erased, kept or added), and the box
 * being dragged. Lines and labels keep their on-screen size whatever the photo's. */
function drawReview(box = null) {
  const canvas = canvases.review;
  const { width, height } = canvases.result;
  if (canvas.width !== width || canvas.height !== height) [canvas.width, canvas.height] = [width, height];
  const context = canvas.getContext('2d');
  context.clearRect(0, 0, width, height);
  if (!current?.edits || !shown) return;
  const scale = width / (canvas.getBoundingClientRect().width || width); // image pixels per CSS pixel
  const [pad, size] = [3 * scale, 14 * scale];
  context.lineWidth = 2 * scale;
  context.font = `bold ${size}px system-ui, sans-serif`;
  context.textBaseline = 'top';
  for (const r of shown.regions) {
    const [x, y, w, h] = r.box;
    const colour = REGION_COLOURS[regionStatus(r)];
    context.strokeStyle = colour;
    context.setLineDash(r.erased ? [] : [6 * scale, 4 * scale]);
    context.beginPath();
    if (r.shape === 'ellipse') context.ellipse(x + w / 2, y + h / 2, w / 2, h / 2, 0, 0, 2 * Math.PI);
    else context.rect(x, y, w, h);
    context.stroke();
    const label = String(r.id);
    const [tagWidth, tagHeight] = [context.measureText(label).width + 2 * pad, size + 2 * pad];
    const [tx, ty] = [Math.min(x, width - tagWidth), y >= tagHeight ? y - tagHeight : y];
    context.fillStyle = colour;
    context.fillRect(tx, ty, tagWidth, tagHeight);
    context.fillStyle = '#fff';
    context.fillText(label, tx + pad, ty + pad);
  }
  if (box) {
    context.setLineDash([4 * scale, 4 * scale]);
    context.strokeStyle = REGION_COLOURS.added;
    context.strokeRect(...box);
  }
}

/** The numbered region list: id, score and status of each region, with the button that changes it. */
function listRegions() {
  const items = (current.edits ? shown.regions : []).map((r) => {
    const item = document.createElement('li');
    const status = regionStatus(r);
    item.className = status;
    item.textContent = `${r.id} · score ${r.score.toFixed(2)} · ${status}`;
    const button = document.createElement('button');
    button.type = 'button';
    button.textContent = status === 'added' ? 'Remove' : status === 'erased' ? 'Keep' : 'Erase';
    button.addEventListener('click', () => toggle(r.id));
    item.append(button);
    return item;
  });
  $('regions').replaceChildren(...items);
}

/** Region `id` clicked (on the view or in the list): a model region is kept, or erased again; an added one goes. */
function toggle(id) {
  const { edits } = current;
  const region = shown.regions[id - 1];
  if (region.source === 'added') {
    edits.add.splice(id - shown.regions.filter((r) => r.source === 'model').length - 1, 1);
  } else if (region.erased) {
    edits.keep = [...edits.keep, id];
    edits.keptBoxes[id] = region.box;
  } else {
    edits.keep = edits.keep.filter((k) => k !== id);
    delete edits.keptBoxes[id];
  }
  edits.reset = false;
  showPhoto(current);
}

/** The image pixel under a pointer event on the review view (CSS pixels scaled to the photo's), clamped to it. */
function imagePixel(event) {
  const canvas = canvases.review;
  const rect = canvas.getBoundingClientRect();
  const clamp = (v, n) => Math.min(n - 1, Math.max(0, Math.floor(v)));
  return [clamp((event.clientX - rect.left) * (canvas.width / rect.width), canvas.width),
    clamp((event.clientY - rect.top) * (canvas.height / rect.height), canvas.height)];
}

/** The box [x, y, w, h] spanned by two image pixels, both inside it. */
const spanned = ([x0, y0], [x1, y1]) => [Math.min(x0, x1), Math.min(y0, y1), Math.abs(x1 - x0) + 1,
  Math.abs(y1 - y0) + 1];
const movedFar = (event) => Math.hypot(event.clientX - drag.clientX, event.clientY - drag.clientY) >= DRAG_PX;

function wireReview() {
  const view = canvases.review;
  view.addEventListener('pointerdown', (event) => {
    if (!current?.edits || camera || event.button !== 0) return;
    view.setPointerCapture(event.pointerId);
    drag = { id: event.pointerId, clientX: event.clientX, clientY: event.clientY, from: imagePixel(event) };
  });
  view.addEventListener('pointermove', (event) => {
    if (drag?.id === event.pointerId && movedFar(event)) drawReview(spanned(drag.from, imagePixel(event)));
  });
  view.addEventListener('pointerup', (event) => {
    if (drag?.id !== event.pointerId) return;
    const [from, isBox] = [drag.from, movedFar(event)];
    drag = null;
    if (isBox) {
      current.edits.add.push(spanned(from, imagePixel(event)));
      current.edits.reset = false;
      showPhoto(current);
    } else {
      const id = regionAt(shown.regions, shown.labels, view.width, ...from);
      if (id) toggle(id);
    }
  });
  view.addEventListener('pointercancel', () => {
    drag = null;
    drawReview();
  });
  new ResizeObserver(() => drawReview()).observe(canvases.result);
}

function summarize(result, networkMs, totalMs) {
  const found = result.regions.filter((r) => r.source === 'model');
  const n = found.length;
  const kept = found.filter((r) => !r.erased).length;
  const added = result.regions.length - n;
  const parts = [n ? `${n} face region${n > 1 ? 's' : ''}` : 'no face found', kept && `${kept} kept un-erased`,
    added && `${added} added`, current.edits?.reset && 'the kept regions were reset: the new settings changed them',
    `threshold ${result.threshold.toFixed(3)} (${MODE_NAMES[$('threshold-mode').value]})`,
    `${current.image.width}×${current.image.height} px`];
  if (networkMs !== undefined) parts.push(`network ${networkMs.toFixed(0)} ms`, `total ${totalMs.toFixed(0)} ms`);
  $('summary').textContent = `${current.name}: ${parts.filter(Boolean).join(' · ')}`;
}

function showPhoto(photo) {
  current = photo;
  const start = performance.now();
  const result = render();
  summarize(result, photo.networkMs, photo.networkMs + performance.now() - start);
  for (const item of $('photos').children) {
    item.setAttribute('aria-pressed', String(Number(item.dataset.index) === photos.indexOf(photo)));
  }
}

async function addPhotos(files) {
  if (camera) stopCamera();
  for (const file of files) {
    setState('busy', `Erasing faces in ${file.name}…`);
    try {
      const image = await decodeImageFile(file);
      const start = performance.now();
      const s = model.settings;
      const prob = await predict(model, image, { inputSize: s.input_size, extraScales: s.extra_scales,
        upscale: s.upscale });
      const photo = { name: file.name, image, prob, networkMs: performance.now() - start,
        edits: { keep: [], keptBoxes: {}, add: [], reset: false } };
      photos.push(photo);
      const item = document.createElement('button');
      item.type = 'button';
      item.textContent = file.name;
      item.dataset.index = String(photos.length - 1);
      item.addEventListener('click', () => showPhoto(photo));
      $('photos').append(item);
      showPhoto(photo);
      setState('ready', `Done: ${file.name}. Nothing was uploaded.`);
    } catch (error) {
      if (!(error instanceof ImageError)) console.error(error);
      const message = error instanceof ImageError ? error.message : `Could not process ${file.name}: ${error.message}`;
      setState('ready', message, true);
    }
  }
}

function cameraError(error) {
  switch (error.name) {
    case 'NotAllowedError':
      return 'Camera access was denied: allow the camera for this page in the browser\'s site settings, then retry.';
    case 'NotFoundError':
    case 'OverconstrainedError':
      return 'No camera was found.';
    case 'NotReadableError':
      return 'The camera is in use by another application.';
    default:
      return `The camera could not start: ${error.message}`;
  }
}

async function startCamera() {
  if (!navigator.mediaDevices?.getUserMedia) {
    setState('ready', 'The camera needs a secure page: open it over https:// or from http://localhost.', true);
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
  } catch (error) {
    setState('ready', cameraError(error), true);
    return;
  }
  const video = document.createElement('video');
  video.muted = true;
  video.playsInline = true;
  video.srcObject = stream;
  try {
    await video.play();
  } catch (error) {
    stream.getTracks().forEach((track) => track.stop());
    setState('ready', `The camera stream did not play: ${error.message}`, true);
    return;
  }
  const smoother = new TemporalMax(TEMPORAL_WINDOW);
  const session = { stream, video, context: context2d(1, 1), smoother, fps: 0 };
  camera = session;
  $('camera').hidden = true;
  $('stop').hidden = false;
  setState('ready', `Camera on: every frame is erased on this device at ${model.settings.live_input_size} px.`);
  cameraLoop(session).catch((error) => {
    console.error(error);
    if (camera === session) stopCamera();
    setState('ready', `The camera stopped: ${error.message}`, true);
  });
}

async function cameraLoop(session) {
  const inputSize = model.settings.live_input_size;
  while (camera === session) {
    const start = performance.now();
    const frame = grabFrame(session.video, session.context);
    const raw = await predict(model, frame, { inputSize, extraScales: [], upscale: model.settings.upscale });
    if (camera !== session) break;
    const networkMs = performance.now() - start;
    current = { name: 'camera', image: frame, prob: session.smoother.push(raw, frame.width, frame.height) };
    const result = render();
    const totalMs = performance.now() - start;
    session.fps = session.fps ? 0.8 * session.fps + 0.2 * (1000 / totalMs) : 1000 / totalMs;
    summarize(result, networkMs, totalMs);
    $('fps').textContent = `${session.fps.toFixed(1)} frames/s · ${totalMs.toFixed(0)} ms per frame ` +
      `(network ${networkMs.toFixed(0)} ms) at ${frame.width}×${frame.height}, network input ${inputSize} px`;
    await new Promise(requestAnimationFrame);
  }
}

function stopCamera() {
  camera.stream.getTracks().forEach((track) => track.stop());
  camera = null;
  $('camera').hidden = false;
  $('stop').hidden = true;
  $('fps').textContent = '';
  setState('ready', 'Camera off.');
}

/** Hand `blob` to the browser as a download named `name` (made here: nothing is sent anywhere). */
function save(blob, name) {
  const link = document.createElement('a');
  link.href = URL.createObjectURL(blob);
  link.download = name;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

const stem = () => current.name.replace(/\.[^.]*$/, '');

/** Save the anonymized view, re-encoded from the canvas: the file carries no metadata (no EXIF, no GPS). */
function download() {
  const type = $('format').value;
  canvases.result.toBlob((blob) => save(blob, `${stem()}-anonymized.${type === 'image/png' ? 'png' : 'jpg'}`),
    type, 0.95);
}

/** Save the audit record of the photo on show (one JSON line, the schema of the package's reports): its regions,
 * the edits, the model and the settings. Only the record lists each region's faces: they are estimated here. */
function downloadRecord() {
  const { image, prob, found, edits } = current;
  const regions = findRegions(found.mask, prob, image.width, image.height, { threshold: found.threshold, faces: true });
  const s = options();
  const settings = {
    ...Object.fromEntries(MODEL_SETTINGS.map((key) => [key, model.settings[key]])),
    threshold_mode: s.thresholdMode, threshold_value: s.thresholdMode === 'fixed' ? s.thresholdValue : null,
    mask_shape: s.maskShape, method: s.method, color: s.color, mosaic_blocks: MOSAIC_BLOCKS,
    blur_strength: BLUR_SIGMA_FRACTION,
  };
  const about = { id: MODEL_URL, weights_sha256: model.weightsSha256, backend: 'onnxruntime-web',
    version: model.ortVersion, size_divisor: model.sizeDivisor, in_channels: model.inChannels };
  const reviewed = applyEdits(found.mask, prob, regions, image.width, image.height,
    { keep: edits.keep, add: edits.add, addShape: s.addShape });
  const record = auditRecord({ input: current.name, threshold: found.threshold, regions: reviewed.regions,
    model: about, settings });
  save(new Blob([`${JSON.stringify(record)}\n`], { type: 'application/json' }), `${stem()}-record.json`);
}

function wire() {
  for (const [id, [values, initial, labels]] of Object.entries(CHOICES)) {
    const options = values.map((value) => new Option(labels[value] ?? value, value, false, value === initial));
    $(id).replaceChildren(...options);
  }
  $('file').addEventListener('change', (event) => {
    addPhotos([...event.target.files]);
    event.target.value = ''; // picking the same file again fires another change
  });
  // Photos dropped anywhere on the page are erased (the browser would otherwise open them in place of the page).
  document.addEventListener('dragover', (event) => {
    event.preventDefault();
    $('drop').classList.add('over');
  });
  document.addEventListener('dragleave', () => $('drop').classList.remove('over'));
  document.addEventListener('drop', (event) => {
    event.preventDefault();
    $('drop').classList.remove('over');
    if (model) addPhotos([...event.dataTransfer.files]);
  });
  $('camera').addEventListener('click', startCamera);
  $('stop').addEventListener('click', stopCamera);
  $('download').addEventListener('click', download);
  $('download-record').addEventListener('click', downloadRecord);
  wireReview();
  $('threshold-value').addEventListener('input', () => {
    $('threshold-mode').value = 'fixed';
  });
  for (const id of ['threshold-mode', 'threshold-value', 'mask-shape', 'method', 'color', 'add-shape']) {
    $(id).addEventListener('input', () => {
      $('color').disabled = $('method').value !== 'solid';
      if (current && !camera) showPhoto(current);
    });
  }
}

function describe(m) {
  const s = m.settings;
  const scales = s.extra_scales.length ? ` + ${s.extra_scales.map((x) => `${x}×`).join(', ')} pass` : '';
  const size = (px) => (px ? `${s.upscale ? '' : 'up to '}${px} px` : 'their own size');
  return `Model ${m.weightsSha256?.slice(0, 12) ?? '(no weights hash)'}: photos at ${size(s.input_size)}${scales}, ` +
    `camera frames at ${size(s.live_input_size)}, auto threshold in [${s.threshold_floor}, ${s.threshold_ceiling}], ` +
    `dilation ${s.dilation} px, regions under ${s.min_area} px dropped. onnxruntime-web ${m.ortVersion} ` +
    `(WebAssembly, ${m.threads} thread${m.threads > 1 ? 's' : ''}` +
    `${self.crossOriginIsolated ? '' : '; cross-origin isolation is off, so one thread'}).`;
}

async function main() {
  wire();
  setState('loading', 'Loading the model…');
  try {
    model = await loadModel(MODEL_URL);
  } catch (error) {
    setState('error', `The model did not load: ${error.message}`, true);
    return;
  }
  $('model').textContent = describe(model);
  for (const id of controls) $(id).disabled = false;
  $('color').disabled = $('method').value !== 'solid';
  setState('ready', 'Ready: pick or drop photos, or start the camera.');
}

main();
