// Load an exported FaceErase model (faceerase/model/onnx_model.py) into onnxruntime-web's WebAssembly backend and run
// it on one image, as OnnxFaceModel.predict_proba does: RGB in [0, 1], NCHW, padded to the size divisor.

import { LUMA_WEIGHTS } from './constants.js';
import { paddingFor } from './geometry.js';
import { onnxMetadata } from './onnx-metadata.js';

const ORT_DIST = new URL('./node_modules/onnxruntime-web/dist/', import.meta.url).href;

export class ModelLoadError extends Error {}

/** WebAssembly threads need SharedArrayBuffer, which browsers give only to cross-origin isolated pages (served
 * with COOP and COEP headers, as web/serve.py and the Space's custom_headers do); elsewhere one thread. */
export function wasmThreads() {
  return self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
}

async function importOrt() {
  try {
    return await import(`${ORT_DIST}ort.wasm.min.mjs`);
  } catch (error) {
    throw new ModelLoadError(`onnxruntime-web did not load from ${ORT_DIST} (${error.message}); ` +
      'run `npm ci` in web/ and serve the page with `python web/serve.py`');
  }
}

async function fetchBytes(url) {
  let response;
  try {
    response = await fetch(url);
  } catch (error) {
    throw new ModelLoadError(`could not fetch the model ${url} (${error.message}); serve the page with ` +
      '`python web/serve.py`: browsers do not fetch files from file:// pages');
  }
  if (!response.ok) throw new ModelLoadError(`could not fetch the model ${url}: HTTP ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}

function modelInfo(bytes, url) {
  let metadata;
  try {
    metadata = onnxMetadata(bytes);
  } catch (error) {
    throw new ModelLoadError(`${url} is not an ONNX file (${error.message})`);
  }
  if (!('faceerase.size_divisor' in metadata)) {
    throw new ModelLoadError(`${url} is not a FaceErase ONNX model (no faceerase.size_divisor metadata)`);
  }
  if (!('faceerase.inference_settings' in metadata)) {
    throw new ModelLoadError(`${url} carries no inference settings; export it from a model folder that has ` +
      'inference.json (`faceerase export-onnx`)');
  }
  const settings = JSON.parse(metadata['faceerase.inference_settings']);
  return {
    sizeDivisor: Number(metadata['faceerase.size_divisor']),
    inChannels: Number(metadata['faceerase.in_channels']),
    weightsSha256: metadata['faceerase.weights_sha256'] ?? null,
    settings: { ...settings, extra_scales: settings.extra_scales.map(Number) },
  };
}

/** Fetch and open the model at `url`; returns {session, Tensor, sizeDivisor, inChannels, weightsSha256,
 * settings (its InferenceSettings as a plain object), threads, ortVersion}. Throws ModelLoadError saying why. */
export async function loadModel(url) {
  const ort = await importOrt();
  const bytes = await fetchBytes(url);
  const info = modelInfo(bytes, url);
  ort.env.wasm.wasmPaths = ORT_DIST;
  ort.env.wasm.numThreads = wasmThreads();
  let session;
  try {
    session = await ort.InferenceSession.create(bytes, { executionProviders: ['wasm'] });
  } catch (error) {
    throw new ModelLoadError(`onnxruntime-web could not open ${url}: ${error.message ?? error}`);
  }
  return { ...info, session, Tensor: ort.Tensor, threads: ort.env.wasm.numThreads, ortVersion: ort.env.versions.web };
}

/** Face probabilities (Float32Array, height x width) of an RGBA image {width, height, data}. */
export async function runNetwork(model, image) {
  const { width, height, data } = image;
  const { ph, pw, mode } = paddingFor(height, width, model.sizeDivisor);
  const W = width + pw;
  const H = height + ph;
  // numpy's 'reflect' mirrors about the edge pixel without repeating it; 'edge' repeats the edge pixel.
  const source = (i, n) => (i < n ? i : mode === 'reflect' ? 2 * (n - 1) - i : n - 1);
  const plane = W * H;
  const input = new Float32Array(model.inChannels * plane);
  for (let y = 0; y < H; y++) {
    const row = source(y, height) * width;
    for (let x = 0; x < W; x++) {
      const p = (row + source(x, width)) * 4;
      const o = y * W + x;
      if (model.inChannels === 3) {
        input[o] = data[p] / 255;
        input[plane + o] = data[p + 1] / 255;
        input[2 * plane + o] = data[p + 2] / 255;
      } else {
        input[o] = (LUMA_WEIGHTS[0] * data[p] + LUMA_WEIGHTS[1] * data[p + 1] + LUMA_WEIGHTS[2] * data[p + 2]) / 255;
      }
    }
  }
  const feeds = { [model.session.inputNames[0]]: new model.Tensor('float32', input, [1, model.inChannels, H, W]) };
  const output = (await model.session.run(feeds))[model.session.outputNames[0]];
  const padded = output.data;
  if (!pw && !ph) return padded;
  const probabilities = new Float32Array(width * height);
  for (let y = 0; y < height; y++) probabilities.set(padded.subarray(y * W, y * W + width), y * width);
  return probabilities;
}
