// The face erasing pipeline of faceerase/erase/pipeline.py (FaceEraser.predict and FaceEraser.postprocess): network
// passes at the model's input size and at its extra scales, combined by their pixel-wise maximum, then threshold,
// mask clean-up, regions, a person's review (edits.js) and anonymization. `settings` are the model's inference
// settings (snake_case keys, as in inference.json).

import { anonymize } from './anonymize.js';
import { DEFAULT_MASK_SHAPE, DEFAULT_METHOD, DEFAULT_THRESHOLD_MODE, MIN_SIDE } from './constants.js';
import { applyEdits } from './edits.js';
import { networkLongSide, roundHalfEven } from './geometry.js';
import { findRegions, refineMask, shapeMask } from './masks.js';
import { runNetwork } from './model.js';
import { resize, resizeImage } from './resize.js';
import { computeThreshold } from './thresholds.js';

/** The image resized for one network pass (FaceEraser._network_input, geometry.resize_long_side): long side
 * inputSize (see networkLongSide) times extraScale, at least MIN_SIDE; shrunk by area averaging, enlarged
 * bilinearly. */
function networkInput(image, inputSize, extraScale, upscale) {
  const { width, height } = image;
  const long = Math.max(width, height);
  const target = Math.max(roundHalfEven(networkLongSide(height, width, inputSize, upscale) * extraScale), MIN_SIDE);
  if (long === target) return image;
  const scale = target / long;
  return resizeImage(image, Math.max(1, roundHalfEven(width * scale)), Math.max(1, roundHalfEven(height * scale)),
    scale < 1 ? 'area' : 'linear');
}

/** Face probabilities (Float32Array, one per pixel of `image`): the maximum over the passes at inputSize and
 * its extraScales, each map resized bilinearly back to the image. */
export async function predict(model, image, { inputSize, extraScales = [], upscale = false }) {
  const { width, height } = image;
  let prob = null;
  for (const scale of [1, ...extraScales]) {
    const input = networkInput(image, inputSize, scale, upscale);
    let pass = await runNetwork(model, input);
    if (input.width !== width || input.height !== height) {
      pass = resize(pass, input.width, input.height, 1, width, height, 'linear');
      for (let i = 0; i < pass.length; i++) pass[i] = Math.min(1, Math.max(0, pass[i]));
    }
    if (prob) for (let i = 0; i < prob.length; i++) prob[i] = Math.max(prob[i], pass[i]);
    else prob = pass;
  }
  return prob;
}

/**
 * Threshold, clean up and shape the mask without running the network, and find its regions.
 * options: {thresholdMode (one of THRESHOLD_MODES), thresholdValue, maskShape (one of MASK_SHAPES)}
 * (threshold_mode, threshold_value and mask_shape of EraseSettings, with their defaults), faces (estimate the faces
 * of each region: see findRegions).
 * Returns {threshold, mask (Uint8Array), regions (findRegions)}: the model's findings, before any review.
 */
export function findFaces(image, prob, settings, { thresholdMode = DEFAULT_THRESHOLD_MODE, thresholdValue,
  maskShape = DEFAULT_MASK_SHAPE, faces = false } = {}) {
  const { width, height } = image;
  const threshold = computeThreshold(prob, thresholdMode, { value: thresholdValue, floor: settings.threshold_floor,
    ceiling: settings.threshold_ceiling });
  const cut = Math.fround(threshold); // numpy compares the float32 map with the threshold as a float32
  const raw = new Uint8Array(prob.length);
  for (let i = 0; i < prob.length; i++) raw[i] = prob[i] > cut ? 1 : 0;
  const refined = refineMask(raw, width, height, { dilation: settings.dilation, minArea: settings.min_area,
    dilationRatio: settings.dilation_ratio });
  const mask = shapeMask(refined, width, height, maskShape);
  return { threshold, mask, regions: findRegions(mask, prob, width, height, { threshold, faces }) };
}

/**
 * Apply a review to what findFaces found and anonymize: no step before the review runs again.
 * options: {method, color (of 'solid'), keep, add, addShape (applyEdits)}.
 * Returns {threshold, mask, regions, labels (applyEdits), anonymized (RGBA image)}.
 */
export function eraseFound(image, prob, found, { method = DEFAULT_METHOD, color = [0, 0, 0], keep, add,
  addShape } = {}) {
  const { mask, regions, labels } = applyEdits(found.mask, prob, found.regions, image.width, image.height,
    { keep, add, addShape });
  return { threshold: found.threshold, mask, regions, labels, anonymized: anonymize(image, mask, method, color) };
}

/** FaceEraser.postprocess: findFaces, then eraseFound with the same options (those of both, review included). */
export function postprocess(image, prob, settings, options = {}) {
  return eraseFound(image, prob, findFaces(image, prob, settings, options), options);
}

/** Pixel-wise maximum of the last `window` probability maps (faceerase.media.video.TemporalMax): a face missed in one
 * camera frame does not flash. A map of another size restarts the window. */
export class TemporalMax {
  constructor(window) {
    this.window = window;
    this.maps = [];
    this.size = '';
  }

  push(prob, width, height) {
    if (this.size !== `${width}x${height}`) [this.maps, this.size] = [[], `${width}x${height}`];
    this.maps.push(prob);
    if (this.maps.length > this.window) this.maps.shift();
    const out = Float32Array.from(prob);
    for (const map of this.maps) for (let i = 0; i < out.length; i++) out[i] = Math.max(out[i], map[i]);
    return out;
  }
}
