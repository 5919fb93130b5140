// Erase the masked regions of an image, as faceerase/anonymize.py does: each connected region is processed in a
// crop around it with a strength scaled to its size (the longer side of its bounding box), and only mask pixels
// of the output differ from the input. Images are RGBA {width, height, data: Uint8ClampedArray}.
//
// 'fill' stands in for the Python package's OpenCV inpainting (Telea), which has no browser build here: it fills
// each hole from its border inwards, layer by layer, every pixel the distance-weighted mean of the known pixels
// within the inpainting radius, then smooths the fill. Same crops, radius and working resolution as the Python
// code; a smoother and simpler fill than Telea's, which also follows the image gradients.

import { roundHalfEven } from './geometry.js';
import { labelRegions } from './masks.js';
import { resize, resizeImage } from './resize.js';

export const METHODS = ['fill', 'blur', 'mosaic', 'solid'];
const BLUR_SIGMA_FRACTION = 0.25; // Gaussian sigma as a fraction of the region size
const MOSAIC_BLOCKS = 6; // mosaic blocks along the longer side of a region
const INPAINT_RADIUS_FRACTION = 1 / 16; // fill radius as a fraction of the region size (working resolution)
const INPAINT_MAX_SIDE = 128; // larger regions are filled at a reduced resolution and the fill upscaled

/** A copy of `image` with the mask pixels erased by `method`; `color` ([r, g, b]) is the fill of 'solid'. */
export function anonymize(image, mask, method, color = [0, 0, 0]) {
  if (!METHODS.includes(method)) throw new Error(`unknown method ${method}; choose one of ${METHODS.join(', ')}`);
  const { width, height } = image;
  const out = { width, height, data: new Uint8ClampedArray(image.data) };
  if (method === 'solid') {
    for (let i = 0; i < mask.length; i++) if (mask[i]) out.data.set(color, 4 * i);
    return out;
  }
  const { labels, regions } = labelRegions(mask, width, height);
  regions.forEach((region, index) => {
    const size = Math.max(region.w, region.h);
    const { x, y, crop } = method === 'blur' ? blur(image, region, size)
      : method === 'mosaic' ? mosaic(image, region, size) : fill(image, mask, region, size);
    for (let row = 0; row < crop.height; row++) {
      for (let col = 0; col < crop.width; col++) {
        const i = (y + row) * width + x + col;
        const from = 4 * (row * crop.width + col);
        if (labels[i] === index + 1) out.data.set(crop.data.subarray(from, from + 3), 4 * i);
      }
    }
  });
  return out;
}

/** The region's bounding box grown by `margin` on every side, clipped to the image, and its pixels. */
function window(image, region, margin) {
  const x = Math.max(0, region.x - margin);
  const y = Math.max(0, region.y - margin);
  const width = Math.min(image.width, region.x + region.w + margin) - x;
  const height = Math.min(image.height, region.y + region.h + margin) - y;
  const data = new Uint8ClampedArray(4 * width * height);
  for (let row = 0; row < height; row++) {
    const from = 4 * ((y + row) * image.width + x);
    data.set(image.data.subarray(from, from + 4 * width), 4 * row * width);
  }
  return { x, y, crop: { width, height, data } };
}

function blur(image, region, size) {
  const sigma = Math.max(2, BLUR_SIGMA_FRACTION * size);
  const { x, y, crop } = window(image, region, Math.ceil(3 * sigma));
  const factor = Math.max(1, sigma / 4);
  const small = resizeImage(crop, Math.max(1, roundHalfEven(crop.width / factor)),
    Math.max(1, roundHalfEven(crop.height / factor)), 'area');
  return { x, y, crop: resizeImage(gaussianBlur(small, sigma / factor), crop.width, crop.height, 'linear') };
}

/** cv2.GaussianBlur(image, (0, 0), sigma, borderType=cv2.BORDER_REFLECT): kernel size round(6 sigma + 1) | 1. */
function gaussianBlur(image, sigma) {
  const size = roundHalfEven(6 * sigma + 1) | 1;
  const half = (size - 1) / 2;
  const kernel = Array.from({ length: size }, (_, i) => Math.exp(-((i - half) ** 2) / (2 * sigma * sigma)));
  const total = kernel.reduce((a, b) => a + b);
  const weights = kernel.map((k) => k / total);
  const reflect = (i, n) => { // fedcba|abcdef|fedcba
    while (i < 0 || i >= n) i = i < 0 ? -i - 1 : 2 * n - i - 1;
    return i;
  };
  const { width, height, data } = image;
  const pass = (source, horizontal) => {
    const target = new Float32Array(source.length);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        for (let k = 0; k < size; k++) {
          const p = horizontal ? 4 * (y * width + reflect(x + k - half, width))
            : 4 * (reflect(y + k - half, height) * width + x);
          for (let c = 0; c < 3; c++) target[4 * (y * width + x) + c] += weights[k] * source[p + c];
        }
      }
    }
    return target;
  };
  const blurred = Uint8ClampedArray.from(pass(pass(data, true), false));
  return { width, height, data: blurred };
}

function mosaic(image, region, size) {
  const block = Math.max(2, Math.ceil(size / MOSAIC_BLOCKS));
  const { x, y, crop } = window(image, region, 0);
  const small = resizeImage(crop, Math.ceil(crop.width / block), Math.ceil(crop.height / block), 'area');
  return { x, y, crop: resizeImage(small, crop.width, crop.height, 'nearest') };
}

function fill(image, mask, region, size) {
  const scale = Math.min(1, INPAINT_MAX_SIDE / size);
  const radius = Math.max(3, roundHalfEven(size * scale * INPAINT_RADIUS_FRACTION));
  const { x, y, crop } = window(image, region, Math.ceil((2 * radius + 2) / scale));
  const hole = new Float32Array(crop.width * crop.height); // every masked pixel of the window is unknown
  for (let row = 0; row < crop.height; row++) {
    for (let col = 0; col < crop.width; col++) hole[row * crop.width + col] = mask[(y + row) * image.width + x + col];
  }
  if (scale === 1) return { x, y, crop: fillFromBorder(crop, hole, radius) };
  const [w, h] = [roundHalfEven(crop.width * scale), roundHalfEven(crop.height * scale)];
  const filled = fillFromBorder(resizeImage(crop, w, h, 'area'), resize(hole, crop.width, crop.height, 1, w, h, 'area'),
    radius);
  return { x, y, crop: resizeImage(filled, crop.width, crop.height, 'linear') };
}

/** Fill the pixels where hole > 0 layer by layer from the border: each layer's pixels take the mean of the pixels
 * known before it within `radius`, weighted by 1 / distance^2; then smooth them. A window with no known pixel
 * becomes mid-grey. */
function fillFromBorder(image, hole, radius) {
  const { width, height } = image;
  const data = new Uint8ClampedArray(image.data);
  const known = Uint8Array.from(hole, (h) => (h > 0 ? 0 : 1));
  if (!known.includes(1)) {
    hole.forEach((_, i) => data.set([128, 128, 128], 4 * i));
    return { width, height, data };
  }
  const taps = { x: [], y: [], weight: [] };
  for (let dy = -radius; dy <= radius; dy++) {
    for (let dx = -radius; dx <= radius; dx++) {
      const d2 = dx * dx + dy * dy;
      if (d2 === 0 || d2 > radius * radius) continue;
      taps.x.push(dx);
      taps.y.push(dy);
      taps.weight.push(1 / d2);
    }
  }
  const unknownNeighbours = (i) => neighbours8(i, width, height).filter((q) => !known[q]);
  // The first layer: the unknown pixels next to a known one; each next layer: the unknown neighbours of the last.
  let layer = [];
  known.forEach((k, i) => {
    if (!k && unknownNeighbours(i).length < neighbours8(i, width, height).length) layer.push(i);
  });
  const queued = new Uint8Array(width * height);
  while (layer.length) {
    const values = new Float64Array(3 * layer.length);
    layer.forEach((i, n) => {
      const x = i % width;
      const y = (i - x) / width;
      let [r, g, b, total] = [0, 0, 0, 0];
      for (let t = 0; t < taps.weight.length; t++) {
        const qx = x + taps.x[t];
        const qy = y + taps.y[t];
        const q = qy * width + qx;
        if (qx < 0 || qx >= width || qy < 0 || qy >= height || !known[q]) continue;
        const w = taps.weight[t];
        r += w * data[4 * q];
        g += w * data[4 * q + 1];
        b += w * data[4 * q + 2];
        total += w;
      }
      values.set([r / total, g / total, b / total], 3 * n);
    });
    layer.forEach((i, n) => {
      data.set(values.subarray(3 * n, 3 * n + 3), 4 * i);
      known[i] = 1;
    });
    const next = [];
    for (const i of layer) {
      for (const q of unknownNeighbours(i)) {
        if (queued[q]) continue;
        queued[q] = 1;
        next.push(q);
      }
    }
    layer = next;
  }
  smoothHoles(data, width, height, hole, radius * radius);
  return { width, height, data };
}

/** Indices of the (up to 8) pixels around pixel i. */
function neighbours8(i, width, height) {
  const x = i % width;
  const y = (i - x) / width;
  const out = [];
  for (let qy = Math.max(0, y - 1); qy <= Math.min(height - 1, y + 1); qy++) {
    for (let qx = Math.max(0, x - 1); qx <= Math.min(width - 1, x + 1); qx++) {
      if (qx !== x || qy !== y) out.push(qy * width + qx);
    }
  }
  return out;
}

/** Relax the filled pixels towards the mean of their 4 neighbours (`iterations` Gauss-Seidel sweeps, the known
 * pixels fixed, edges repeated): this softens the seams where layers from opposite borders meet. */
function smoothHoles(data, width, height, hole, iterations) {
  const inside = [];
  hole.forEach((h, i) => {
    if (h > 0) inside.push(i);
  });
  const around = new Int32Array(4 * inside.length); // left, right, up, down
  inside.forEach((i, k) => {
    const x = i % width;
    const y = (i - x) / width;
    around.set([i - (x > 0), i + (x < width - 1), i - width * (y > 0), i + width * (y < height - 1)], 4 * k);
  });
  const values = Float32Array.from(data);
  for (let n = 0; n < iterations; n++) {
    for (let k = 0; k < inside.length; k++) {
      const i = 4 * inside[k];
      for (let ch = 0; ch < 3; ch++) {
        let sum = 0;
        for (let j = 4 * k; j < 4 * k + 4; j++) sum += values[4 * around[j] + ch];
        values[i + ch] = sum / 4;
      }
    }
  }
  for (const i of inside) data.set(values.subarray(4 * i, 4 * i + 3), 4 * i);
}
