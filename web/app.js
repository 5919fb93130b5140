// The page: photos (picked or dropped) and camera frames go through the FaceErase pipeline, all in this browser.

import { METHODS } from './anonymize.js';
import {
  DEFAULT_MASK_SHAPE, DEFAULT_METHOD, DEFAULT_THRESHOLD_MODE, MASK_SHAPES, TEMPORAL_WINDOW, THRESHOLD_MODES,
} from './constants.js';
import { ImageError, context2d, decodeImageFile, grabFrame } from './images.js';
import { loadModel } from './model.js';
import { TemporalMax, postprocess, predict } from './pipeline.js';

const MODEL_URL = 'model.onnx';
const MODE_NAMES = { auto: 'auto', seed: '2018 rule', fixed: 'fixed' };
// The options of the selects (values from constants.js, generated from the Python package) and their labels.
const CHOICES = {
  'threshold-mode': [THRESHOLD_MODES, DEFAULT_THRESHOLD_MODE,
    { auto: 'auto (calibrated)', seed: '2018 rule (60% of the map\'s range)', fixed: 'fixed (slider)' }],
  'mask-shape': [MASK_SHAPES, DEFAULT_MASK_SHAPE, { predicted: 'as predicted', ellipse: 'ellipse', box: 'box' }],
  method: [METHODS, DEFAULT_METHOD, { fill: 'fill (from the border, blurred)', solid: 'solid colour' }],
};

const $ = (id) => document.getElementById(id);
const canvases = { photo: $('photo'), probability: $('probability'), mask: $('mask'), result: $('result') };
const controls = ['file', 'camera', 'threshold-mode', 'threshold-value', 'mask-shape', 'method', 'color', 'format'];

let model = null;
const photos = []; // {name, image, prob, networkMs}
let current = null; // the photo or camera frame on show: {name, image, prob}
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

/** Post-process what is on show with the current options and draw the four views; returns the result. */
function render() {
  const { image, prob } = current;
  const { width, height } = image;
  const result = postprocess(image, prob, model.settings, options());
  draw(canvases.photo, width, height, image.data);
  draw(canvases.probability, width, height, gray(prob));
  draw(canvases.mask, width, height, gray(result.mask));
  draw(canvases.result, width, height, result.anonymized.data);
  if ($('threshold-mode').value !== 'fixed') $('threshold-value').value = result.threshold.toFixed(2);
  $('threshold-output').textContent = result.threshold.toFixed(3);
  $('download').disabled = false;
  return result;
}

function summarize(result, networkMs, totalMs) {
  const n = result.regions.length;
  const found = n ? `${n} face region${n > 1 ? 's' : ''}` : 'no face found';
  $('summary').textContent = `${current.name}: ${found} · threshold ${result.threshold.toFixed(3)} ` +
    `(${MODE_NAMES[$('threshold-mode').value]}) · ${current.image.width}×${current.image.height} px` +
    (networkMs === undefined ? '' : ` · network ${networkMs.toFixed(0)} ms · total ${totalMs.toFixed(0)} ms`);
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
      const photo = { name: file.name, image, prob, networkMs: performance.now() - start };
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

/** Save the anonymized view, re-encoded from the canvas: the file carries no metadata (no EXIF, no GPS). */
function download() {
  const type = $('format').value;
  const stem = current.name.replace(/\.[^.]*$/, '');
  canvases.result.toBlob((blob) => {
    const link = document.createElement('a');
    link.href = URL.createObjectURL(blob);
    link.download = `${stem}-anonymized.${type === 'image/png' ? 'png' : 'jpg'}`;
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 1000);
  }, type, 0.95);
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
  $('threshold-value').addEventListener('input', () => {
    $('threshold-mode').value = 'fixed';
  });
  for (const id of ['threshold-mode', 'threshold-value', 'mask-shape', 'method', 'color']) {
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
