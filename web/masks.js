// Binary mask clean-up, region shapes and connected face regions, as faceerase/erase/masks.py does them (refine_mask,
// shape_mask, find_regions). A mask is a Uint8Array of width x height pixels, 1 for face.

import { MASK_SHAPES } from './constants.js';
import { roundHalfEven } from './geometry.js';

/** Connected regions (8-connectivity), numbered from 1 in raster order of their first pixel:
 * {labels: Int32Array (0 = background), regions: [{x, y, w, h, area}]} (regions[i] is label i + 1). */
export function labelRegions(mask, width, height) {
  const labels = new Int32Array(width * height);
  // Provisional labels go only to pixels with no labelled neighbour before them, which are 8-separated.
  const parent = new Int32Array(Math.ceil(width / 2) * Math.ceil(height / 2) + 1);
  const find = (a) => {
    while (parent[a] !== a) a = parent[a] = parent[parent[a]];
    return a;
  };
  const join = (a, b) => {
    const [ra, rb] = [find(a), find(b)];
    if (ra < rb) parent[rb] = ra;
    else parent[ra] = rb;
  };
  let next = 1;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = y * width + x;
      if (!mask[i]) continue;
      let label = 0;
      const neighbours = [x > 0 ? labels[i - 1] : 0,
        y > 0 && x > 0 ? labels[i - width - 1] : 0,
        y > 0 ? labels[i - width] : 0,
        y > 0 && x < width - 1 ? labels[i - width + 1] : 0];
      for (const n of neighbours) {
        if (!n) continue;
        if (label) join(label, n);
        else label = n;
      }
      if (!label) {
        label = next++;
        parent[label] = label;
      }
      labels[i] = label;
    }
  }
  // Roots are each region's smallest provisional label, i.e. that of its first pixel: number them in order.
  const final = new Int32Array(next);
  const regions = [];
  for (let label = 1; label < next; label++) {
    if (find(label) === label) {
      regions.push({ x: Infinity, y: Infinity, right: -1, bottom: -1, area: 0 });
      final[label] = regions.length;
    }
  }
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = y * width + x;
      if (!labels[i]) continue;
      const label = labels[i] = final[find(labels[i])];
      const r = regions[label - 1];
      r.x = Math.min(r.x, x);
      r.y = Math.min(r.y, y);
      r.right = Math.max(r.right, x);
      r.bottom = Math.max(r.bottom, y);
      r.area += 1;
    }
  }
  return {
    labels,
    regions: regions.map((r) => ({ x: r.x, y: r.y, w: r.right - r.x + 1, h: r.bottom - r.y + 1, area: r.area })),
  };
}

/** Grow the mask by OpenCV's elliptical structuring element of diameter 2 * radius + 1 (cv2.dilate with
 * cv2.getStructuringElement(cv2.MORPH_ELLIPSE, ...)). */
export function dilateEllipse(mask, width, height, radius) {
  const halfWidths = [];
  for (let dy = -radius; dy <= radius; dy++) {
    halfWidths.push(roundHalfEven(radius * Math.sqrt((radius * radius - dy * dy) * (1 / (radius * radius)))));
  }
  const prefix = new Int32Array(height * (width + 1)); // mask pixels before x in each row
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      prefix[y * (width + 1) + x + 1] = prefix[y * (width + 1) + x] + mask[y * width + x];
    }
  }
  const out = new Uint8Array(width * height);
  const rowsWithMask = new Int32Array(height + 1); // rows before y that hold mask pixels
  for (let y = 0; y < height; y++) rowsWithMask[y + 1] = rowsWithMask[y] + (prefix[(y + 1) * (width + 1) - 1] ? 1 : 0);
  for (let y = 0; y < height; y++) {
    // rows with no mask pixel within radius stay empty
    if (rowsWithMask[Math.min(height, y + radius + 1)] === rowsWithMask[Math.max(0, y - radius)]) continue;
    for (let x = 0; x < width; x++) {
      for (let dy = -radius; dy <= radius; dy++) {
        const row = y + dy;
        if (row < 0 || row >= height) continue;
        const half = halfWidths[dy + radius];
        const base = row * (width + 1);
        if (prefix[base + Math.min(width, x + half + 1)] > prefix[base + Math.max(0, x - half)]) {
          out[y * width + x] = 1;
          break;
        }
      }
    }
  }
  return out;
}

/** For every pixel, the squared Euclidean distance to the nearest mask pixel and that pixel's index: the exact
 * transform of Felzenszwalb & Huttenlocher (a pass down each column, then lower envelopes of parabolas along
 * each row). The mask must not be empty. */
function nearestMaskPixel(mask, width, height) {
  const columnRow = new Int32Array(width * height).fill(-1); // row of the nearest mask pixel in the column
  for (let x = 0; x < width; x++) {
    for (let y = 0, last = -1; y < height; y++) {
      if (mask[y * width + x]) last = y;
      columnRow[y * width + x] = last;
    }
    for (let y = height - 1, below = -1; y >= 0; y--) {
      const i = y * width + x;
      if (mask[i]) below = y;
      if (below >= 0 && (columnRow[i] < 0 || below - y < y - columnRow[i])) columnRow[i] = below;
    }
  }
  const distance2 = new Float64Array(width * height);
  const nearest = new Int32Array(width * height);
  const f = new Float64Array(width);
  const v = new Int32Array(width);
  const z = new Float64Array(width + 1);
  for (let y = 0; y < height; y++) {
    let k = -1;
    for (let q = 0; q < width; q++) {
      const row = columnRow[y * width + q];
      if (row < 0) continue; // no mask pixel in this column
      f[q] = (row - y) ** 2;
      if (k < 0) {
        k = 0;
        v[0] = q;
        z[0] = -Infinity;
        z[1] = Infinity;
        continue;
      }
      let s = (f[q] + q * q - f[v[k]] - v[k] * v[k]) / (2 * (q - v[k]));
      while (s <= z[k]) {
        k--;
        s = (f[q] + q * q - f[v[k]] - v[k] * v[k]) / (2 * (q - v[k]));
      }
      k++;
      v[k] = q;
      z[k] = s;
      z[k + 1] = Infinity;
    }
    for (let q = 0, j = 0; q < width; q++) {
      while (z[j + 1] < q) j++;
      const i = y * width + q;
      distance2[i] = (q - v[j]) ** 2 + f[v[j]];
      nearest[i] = columnRow[y * width + v[j]] * width + v[j];
    }
  }
  return { distance2, nearest };
}

/**
 * Drop connected regions smaller than minArea pixels, then grow each region by `dilation` pixels (elliptical
 * element) or, with dilationRatio, by the larger of `dilation` and dilationRatio times the longer side of its
 * bounding box: every pixel within that Euclidean distance of the region joins it (exact distances here, where
 * OpenCV's distance transform approximates them).
 */
export function refineMask(mask, width, height, { dilation, minArea, dilationRatio }) {
  if (!mask.includes(1)) return mask;
  const labelled = minArea > 1 || dilationRatio > 0 ? labelRegions(mask, width, height) : null;
  if (minArea > 1) {
    const keep = [false, ...labelled.regions.map((r) => r.area >= minArea)]; // by label; 0 is the background
    mask = new Uint8Array(mask.length);
    for (let i = 0; i < mask.length; i++) mask[i] = keep[labelled.labels[i]] ? 1 : 0;
    if (!mask.includes(1)) return mask;
  }
  if (dilationRatio > 0) {
    const radius = labelled.regions.map((r) => Math.max(dilation, dilationRatio * Math.max(r.w, r.h)));
    const { distance2, nearest } = nearestMaskPixel(mask, width, height);
    return mask.map((_, i) => (distance2[i] <= radius[labelled.labels[nearest[i]] - 1] ** 2 ? 1 : 0));
  }
  return dilation > 0 ? dilateEllipse(mask, width, height, dilation) : mask;
}

/**
 * The mask as predicted, or with each connected region replaced by the box or the ellipse around it (shape_mask);
 * the result always contains the mask. The ellipse is Python's: the moment ellipse of the region's pixels (their
 * covariance plus 1/12, a pixel's own variance) scaled to contain every pixel corner. A pixel joins it when its
 * centre lies in that ellipse grown by half a pixel, which covers about what OpenCV's filled ellipse does.
 */
export function shapeMask(mask, width, height, shape) {
  if (!MASK_SHAPES.includes(shape)) {
    throw new Error(`unknown mask shape ${shape}; choose one of ${MASK_SHAPES.join(', ')}`);
  }
  const out = Uint8Array.from(mask);
  if (shape === 'predicted' || !mask.includes(1)) return out;
  const { labels, regions } = labelRegions(mask, width, height);
  regions.forEach((r, index) => {
    if (shape === 'box') {
      for (let y = r.y; y < r.y + r.h; y++) out.fill(1, y * width + r.x, y * width + r.x + r.w);
      return;
    }
    const pixels = []; // [x, y] of the region's pixels
    for (let y = r.y; y < r.y + r.h; y++) {
      for (let x = r.x; x < r.x + r.w; x++) if (labels[y * width + x] === index + 1) pixels.push([x, y]);
    }
    const cx = pixels.reduce((sum, [x]) => sum + x, 0) / pixels.length;
    const cy = pixels.reduce((sum, [, y]) => sum + y, 0) / pixels.length;
    let [xx, yy, xy] = [1 / 12, 1 / 12, 0];
    for (const [x, y] of pixels) {
      xx += (x - cx) ** 2 / pixels.length;
      yy += (y - cy) ** 2 / pixels.length;
      xy += ((x - cx) * (y - cy)) / pixels.length;
    }
    // Principal axes: variances major >= minor > 0 along (cos, sin) and (-sin, cos).
    const angle = Math.atan2(2 * xy, xx - yy) / 2;
    const [cos, sin] = [Math.cos(angle), Math.sin(angle)];
    const spread = Math.hypot((xx - yy) / 2, xy);
    const [major, minor] = [(xx + yy) / 2 + spread, (xx + yy) / 2 - spread];
    let scale2 = 0; // the largest squared Mahalanobis distance of a pixel corner
    for (const [x, y] of pixels) {
      for (const [ox, oy] of [[-0.5, -0.5], [-0.5, 0.5], [0.5, -0.5], [0.5, 0.5]]) {
        const [dx, dy] = [x + ox - cx, y + oy - cy];
        scale2 = Math.max(scale2, (dx * cos + dy * sin) ** 2 / major + (dy * cos - dx * sin) ** 2 / minor);
      }
    }
    const a = Math.sqrt(scale2 * major) + 0.5;
    const b = Math.sqrt(scale2 * minor) + 0.5;
    const ex = Math.hypot(a * cos, b * sin);
    const ey = Math.hypot(a * sin, b * cos);
    for (let y = Math.max(0, Math.ceil(cy - ey)); y <= Math.min(height - 1, Math.floor(cy + ey)); y++) {
      for (let x = Math.max(0, Math.ceil(cx - ex)); x <= Math.min(width - 1, Math.floor(cx + ex)); x++) {
        const [dx, dy] = [x - cx, y - cy];
        if (((dx * cos + dy * sin) / a) ** 2 + ((dy * cos - dx * sin) / b) ** 2 <= 1) out[y * width + x] = 1;
      }
    }
  });
  return out;
}

/** Connected regions of the mask in raster order, scored with the probabilities inside them, as find_regions
 * returns them: [{id (1-based, raster order), box: [x, y, w, h], score (highest), meanScore, area, faces, source:
 * 'model', erased: true}]. With `faces`, each region's faces are estimateFaces of its core, its pixels whose
 * probability is above `threshold` (undefined: the whole region); without, they are null: the estimate blurs each
 * region at its own scale, seconds for a close-up face in a large photo, so the page asks for it only where it is
 * recorded. */
export function findRegions(mask, prob, width, height, { threshold, faces = false } = {}) {
  const { labels, regions } = labelRegions(mask, width, height);
  const max = new Float64Array(regions.length);
  const sum = new Float64Array(regions.length);
  for (let i = 0; i < labels.length; i++) {
    const region = labels[i] - 1;
    if (region < 0) continue;
    max[region] = Math.max(max[region], prob[i]);
    sum[region] += prob[i];
  }
  const cut = Math.fround(threshold); // numpy compares the float32 map with the threshold as a float32
  const facesOf = (r, label) => {
    const core = new Uint8Array(r.w * r.h);
    for (let y = 0; y < r.h; y++) {
      for (let x = 0; x < r.w; x++) {
        const j = (r.y + y) * width + r.x + x;
        core[y * r.w + x] = labels[j] === label && (threshold === undefined || prob[j] > cut) ? 1 : 0;
      }
    }
    return estimateFaces(core, r.w, r.h);
  };
  return regions.map((r, i) => ({ id: i + 1, box: [r.x, r.y, r.w, r.h], score: max[i], meanScore: sum[i] / r.area,
    area: r.area, faces: faces ? facesOf(r, i + 1) : null, source: 'model', erased: true }));
}

// OpenCV's 5x5 chamfer distance (cv2.distanceTransform with DIST_L2 and mask size 5): steps of 1, 1.4 and 2.1969
// (a knight's move), summed in float32.
const [HV, DIAG, KNIGHT] = [1, 1.4, 2.1969].map(Math.fround);
// [dy, dx, step] of the neighbours the forward pass reads (the backward pass reads their mirror images)
const CHAMFER_STEPS = [[-2, -1, KNIGHT], [-2, 1, KNIGHT], [-1, -2, KNIGHT], [-1, -1, DIAG], [-1, 0, HV],
  [-1, 1, DIAG], [-1, 2, KNIGHT], [0, -1, HV]];

/** Float32 distances of every pixel to the nearest 0 pixel of `mask`, by OpenCV's two chamfer passes (pixels outside
 * the image count as far). */
function chamferDistance(mask, width, height) {
  const d = new Float32Array(width * height);
  const at = (y, x) => (y >= 0 && y < height && x >= 0 && x < width ? d[y * width + x] : Infinity);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (!mask[y * width + x]) continue;
      let best = Infinity;
      for (const [dy, dx, step] of CHAMFER_STEPS) best = Math.min(best, Math.fround(at(y + dy, x + dx) + step));
      d[y * width + x] = best;
    }
  }
  for (let y = height - 1; y >= 0; y--) {
    for (let x = width - 1; x >= 0; x--) {
      let best = d[y * width + x];
      if (best <= HV) continue;
      for (const [dy, dx, step] of CHAMFER_STEPS) best = Math.min(best, Math.fround(at(y - dy, x - dx) + step));
      d[y * width + x] = best;
    }
  }
  return d;
}

/** OpenCV's float Gaussian kernel of `size` taps (getGaussianKernel). */
function gaussianKernel(size, sigma) {
  const scale = -0.125 / (sigma * sigma); // x below counts half pixels
  const half = (size - 1) / 2;
  const side = [];
  for (let i = 0, x = 1 - size; i < half; i++, x += 2) side.push(Math.exp(x * x * scale));
  const norm = 1 / (2 * side.reduce((a, b) => a + b, 0) + 1);
  const tail = side.map((t) => Math.fround(t * norm));
  return [...tail, Math.fround(norm), ...tail.reverse()];
}

/** cv2.borderInterpolate with BORDER_REFLECT_101 (mirrored without repeating the edge, as often as needed). */
function reflect101(p, n) {
  if (n === 1) return 0;
  while (p < 0 || p >= n) p = p < 0 ? -p : 2 * (n - 1) - p;
  return p;
}

/** cv2.GaussianBlur of a float32 image with ksize (0, 0), in the float32 arithmetic of OpenCV's x86 (AVX2) build: a
 * pass along the rows (the taps' products accumulated in order), then one along the columns (the centre tap, then
 * each pair of mirrored values summed and multiplied in), reflected at the border. OpenCV runs both passes in SIMD
 * lanes of 8 pixels with fused multiply-adds (here: float32 products are exact in float64, and the sum is rounded to
 * float32), the rows' pass one more step of 4, and the last pixels of a row in plain float32 steps (the product
 * rounded, then the sum). The same arithmetic gives the same bits on all but a few faint pixels, and so the same
 * ties between the peaks estimateFaces compares. */
function gaussianBlur(values, width, height, sigma) {
  const kernel = Float64Array.from(gaussianKernel(roundHalfEven(sigma * 8 + 1) | 1, sigma));
  const [size, half] = [kernel.length, (kernel.length - 1) / 2];
  const line = new Float64Array(Math.max(width, height) + 2 * half);
  const load = (source, length, start, step) => {
    for (let i = -half; i < length + half; i++) line[i + half] = source[start + reflect101(i, length) * step];
  };
  const rows = new Float32Array(values.length);
  const fusedColumns = width - (width % 4);
  for (let y = 0; y < height; y++) {
    load(values, width, y * width, 1);
    for (let x = 0; x < width; x++) {
      let s = 0;
      if (x < fusedColumns) for (let k = 0; k < size; k++) s = Math.fround(s + kernel[k] * line[x + k]);
      else for (let k = 0; k < size; k++) s = Math.fround(s + Math.fround(kernel[k] * line[x + k]));
      rows[y * width + x] = s;
    }
  }
  const out = new Float32Array(values.length);
  const fusedRows = width - (width % 8);
  for (let x = 0; x < width; x++) {
    load(rows, height, x, width);
    const fused = x < fusedRows;
    for (let y = 0; y < height; y++) {
      const centre = y + half;
      let s = Math.fround(kernel[half] * line[centre]);
      for (let k = 1; k <= half; k++) {
        const pair = Math.fround(line[centre - k] + line[centre + k]);
        s = fused ? Math.fround(s + kernel[half + k] * pair) : Math.fround(s + Math.fround(kernel[half + k] * pair));
      }
      out[y * width + x] = s;
    }
  }
  return out;
}

/** An estimate of the faces in one region from its core (a width x height 0/1 mask), as estimate_faces makes it: the
 * well-separated peaks of the distance to the core's edge, smoothed by a quarter of the highest; at least 1. */
export function estimateFaces(core, width, height) {
  const [w, h] = [width + 2, height + 2]; // the core padded by one background pixel
  const padded = new Uint8Array(w * h);
  for (let y = 0; y < height; y++) padded.set(core.subarray(y * width, (y + 1) * width), (y + 1) * w + 1);
  const distance = chamferDistance(padded, w, h);
  const radius = distance.reduce((a, b) => Math.max(a, b), 0);
  if (radius === 0) return 1;
  const smooth = gaussianBlur(distance, w, h, Math.max(1, radius / 4));
  const floor = 0.5 * smooth.reduce((a, b) => Math.max(a, b), 0);
  const peaks = []; // [value, y, x] of the pixels that are the highest of their 3 x 3 neighbourhood, in raster order
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const value = smooth[y * w + x];
      if (value <= floor) continue;
      let highest = true;
      for (let dy = -1; dy <= 1 && highest; dy++) {
        for (let dx = -1; dx <= 1; dx++) {
          const [yy, xx] = [y + dy, x + dx];
          if (yy >= 0 && yy < h && xx >= 0 && xx < w && smooth[yy * w + xx] > value) highest = false;
        }
      }
      if (highest) peaks.push([value, y, x]);
    }
  }
  peaks.sort((a, b) => b[0] - a[0]); // stable: ties stay in raster order
  const kept = [];
  for (const [, y, x] of peaks) {
    if (kept.every(([ky, kx]) => (y - ky) ** 2 + (x - kx) ** 2 >= radius ** 2)) kept.push([y, x]);
  }
  return Math.max(1, kept.length);
}
