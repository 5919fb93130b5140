// Erase the masked regions of an image, as faceerase/erase/fill.py does, with its algorithms and constants: each
// connected region is processed in a crop around it with a strength scaled to its size (the longer side of its
// bounding box), and only mask pixels of the output differ from the input. Images are RGBA
// {width, height, data: Uint8ClampedArray}. The page offers the Python methods it implements ('fill', 'blur',
// 'mosaic', 'solid'): OpenCV's inpainting ('inpaint_telea', 'inpaint_ns') has no browser build here.

import {
  BLUR_SIGMA_FRACTION, FILL_BLUR_SIGMAS, INPAINT_MAX_SIDE, INPAINT_RADIUS_FRACTION, METHODS as PYTHON_METHODS,
  MOSAIC_BLOCKS,
} from './constants.js';
import { roundHalfEven } from './geometry.js';
import { labelRegions } from './masks.js';
import { resize, resizeImage } from './resize.js';

const ERASERS = { fill, blur, mosaic }; // 'solid' needs no crop
/** The methods of faceerase.erase.fill.METHODS that this page implements, in their order. */
export const METHODS = PYTHON_METHODS.filter((method) => method in ERASERS || method === 'solid');

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
    const { x, y, crop } = ERASERS[method](image, mask, region, size);
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

function blur(image, mask, region, size) {
  const sigma = Math.max(2, BLUR_SIGMA_FRACTION * size);
  const { x, y, crop } = window(image, region, Math.ceil(3 * sigma));
  const factor = Math.max(1, sigma / 4);
  const small = resizeImage(crop, Math.max(1, roundHalfEven(crop.width / factor)),
    Math.max(1, roundHalfEven(crop.height / factor)), 'area');
  const blurred = { ...small, data: gaussianBlur(small.data, small.width, small.height, 4, sigma / factor) };
  return { x, y, crop: resizeImage(blurred, crop.width, crop.height, 'linear') };
}

/** cv2.GaussianBlur with sigma and a size x size kernel (default: OpenCV's for 8-bit images, round(6 sigma + 1) | 1),
 * borderType=cv2.BORDER_REFLECT, of interleaved pixels (width x height x channels); returns the input's array type. */
function gaussianBlur(data, width, height, channels, sigma, size = roundHalfEven(6 * sigma + 1) | 1) {
  const half = (size - 1) / 2;
  const kernel = Array.from({ length: size }, (_, i) => Math.exp(-((i - half) ** 2) / (2 * sigma * sigma)));
  const total = kernel.reduce((a, b) => a + b);
  const weights = Float64Array.from(kernel, (k) => k / total);
  const reflect = (i, n) => { // fedcba|abcdef|fedcba
    while (i < 0 || i >= n) i = i < 0 ? -i - 1 : 2 * n - i - 1;
    return i;
  };
  const tapsOf = (n) => { // for each position along an axis, the positions its taps read
    const taps = new Int32Array(n * size);
    for (let i = 0; i < n; i++) for (let k = 0; k < size; k++) taps[i * size + k] = reflect(i + k - half, n);
    return taps;
  };
  const rowLength = width * channels;
  const horizontal = (source) => {
    const taps = tapsOf(width);
    const target = new Float64Array(source.length);
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const to = y * rowLength + x * channels;
        for (let k = 0; k < size; k++) {
          const from = y * rowLength + taps[x * size + k] * channels;
          for (let c = 0; c < channels; c++) target[to + c] += weights[k] * source[from + c];
        }
      }
    }
    return target;
  };
  const vertical = (source) => { // whole rows at a time
    const taps = tapsOf(height);
    const target = new Float64Array(source.length);
    for (let y = 0; y < height; y++) {
      for (let k = 0; k < size; k++) {
        const from = taps[y * size + k] * rowLength;
        for (let j = 0; j < rowLength; j++) target[y * rowLength + j] += weights[k] * source[from + j];
      }
    }
    return target;
  };
  return data.constructor.from(vertical(horizontal(data)));
}

function mosaic(image, mask, region, size) {
  const block = Math.max(2, Math.ceil(size / MOSAIC_BLOCKS));
  const { x, y, crop } = window(image, region, 0);
  const small = resizeImage(crop, Math.ceil(crop.width / block), Math.ceil(crop.height / block), 'area');
  return { x, y, crop: resizeImage(small, crop.width, crop.height, 'nearest') };
}

/** Working resolution (scale), radius and crop margin of 'fill' for a region of this size (_working_scale). */
function workingScale(size) {
  const scale = Math.min(1, INPAINT_MAX_SIDE / size);
  const radius = Math.max(3, roundHalfEven(size * scale * INPAINT_RADIUS_FRACTION));
  return { scale, radius, margin: Math.ceil((2 * radius + 2) / scale) };
}

/** 'fill' in float64 at the working resolution: every crop pixel that a mask pixel touches there is unknown and
 * filled by fillFromBorder, then blurred (FILL_BLUR_SIGMAS: two Gaussian blurs, each 3 sigma wide with reflected
 * edges, mixed by layer depth / deepest layer); the crop is scaled back bilinearly and rounded (halves to even, as
 * Uint8ClampedArray does). */
function fill(image, mask, region, size) {
  const { scale, radius, margin } = workingScale(size);
  const { x, y, crop } = window(image, region, margin);
  const { width, height } = crop;
  let rgb = new Float64Array(3 * width * height);
  let hole = new Float64Array(width * height);
  for (let i = 0; i < hole.length; i++) {
    rgb.set(crop.data.subarray(4 * i, 4 * i + 3), 3 * i);
    hole[i] = mask[(y + Math.floor(i / width)) * image.width + x + (i % width)];
  }
  let [w, h] = [width, height];
  if (scale < 1) {
    [w, h] = [Math.max(1, roundHalfEven(width * scale)), Math.max(1, roundHalfEven(height * scale))];
    rgb = resize(rgb, width, height, 3, w, h, 'area');
    hole = resize(hole, width, height, 1, w, h, 'area');
  }
  const unknown = Uint8Array.from(hole, (v) => (v > 0 ? 1 : 0));
  const { values, depth } = fillFromBorder(rgb, unknown, w, h, radius);
  const [border, deep] = FILL_BLUR_SIGMAS.map((s) => gaussianBlur(values, w, h, 3, s * radius,
    2 * Math.ceil(3 * s * radius) + 1));
  const deepest = depth.reduce((a, b) => Math.max(a, b));
  let filled = values;
  for (let i = 0; i < depth.length; i++) {
    if (!unknown[i]) continue;
    const mix = depth[i] / deepest;
    for (let c = 3 * i; c < 3 * i + 3; c++) filled[c] = border[c] + mix * (deep[c] - border[c]);
  }
  if (scale < 1) filled = resize(filled, w, h, 3, width, height, 'linear');
  const data = new Uint8ClampedArray(4 * width * height);
  for (let i = 0; i < width * height; i++) data.set(filled.subarray(3 * i, 3 * i + 3), 4 * i);
  return { x, y, crop: { width, height, data } };
}

/** fill_from_border: fill the unknown pixels of interleaved RGB values (Float64Array, width x height x 3) from the
 * border inwards, one layer at a time: the unknown pixels next to a known one (8-neighbours) take the mean of the
 * pixels known before them within `radius`, weighted by 1 / squared distance, and become known. Returns {values: the
 * filled Float64Array, depth: each pixel's layer (Int32Array, 1 next to the border, 0 for known pixels)}; with no
 * known pixel, mid-grey (128), all of it layer 1. */
export function fillFromBorder(rgb, unknown, width, height, radius) {
  const out = Float64Array.from(rgb);
  const depth = Int32Array.from(unknown);
  const known = Uint8Array.from(unknown, (u) => 1 - u);
  if (!known.includes(1)) return { values: out.fill(128), depth };
  const [tapX, tapY, tapWeight] = [[], [], []]; // the offsets within the radius and their weights
  for (let dy = -radius; dy <= radius; dy++) {
    for (let dx = -radius; dx <= radius; dx++) {
      const d2 = dx * dx + dy * dy;
      if (d2 === 0 || d2 > radius * radius) continue;
      tapX.push(dx);
      tapY.push(dy);
      tapWeight.push(1 / d2);
    }
  }
  const queued = new Uint8Array(width * height); // unknown pixels already in a layer
  const unqueuedAround = (i) => { // the unknown pixels next to pixel i in no layer yet, now queued
    const x = i % width;
    const y = (i - x) / width;
    const found = [];
    for (let qy = Math.max(0, y - 1); qy <= Math.min(height - 1, y + 1); qy++) {
      for (let qx = Math.max(0, x - 1); qx <= Math.min(width - 1, x + 1); qx++) {
        const q = qy * width + qx;
        if (known[q] || queued[q]) continue;
        queued[q] = 1;
        found.push(q);
      }
    }
    return found;
  };
  // The first layer: the unknown pixels next to a known one; each next layer: the unknown neighbours of the last.
  let layer = [];
  for (let i = 0; i < known.length; i++) if (known[i]) layer.push(...unqueuedAround(i));
  for (let number = 1; layer.length; number++) {
    const values = new Float64Array(3 * layer.length);
    layer.forEach((i, n) => {
      const x = i % width;
      const y = (i - x) / width;
      let [r, g, b, total] = [0, 0, 0, 0];
      for (let t = 0; t < tapWeight.length; t++) {
        const qx = x + tapX[t];
        const qy = y + tapY[t];
        const q = qy * width + qx;
        if (qx < 0 || qx >= width || qy < 0 || qy >= height || !known[q]) continue;
        const w = tapWeight[t];
        r += w * out[3 * q];
        g += w * out[3 * q + 1];
        b += w * out[3 * q + 2];
        total += w;
      }
      values[3 * n] = r / total;
      values[3 * n + 1] = g / total;
      values[3 * n + 2] = b / total;
    });
    layer.forEach((i, n) => {
      out.set(values.subarray(3 * n, 3 * n + 3), 3 * i);
      known[i] = 1;
      depth[i] = number;
    });
    layer = layer.flatMap(unqueuedAround);
  }
  return { values: out, depth };
}
