// A person's review of an erased photo, as faceerase/erase/edits.py applies it, and the audit record that says what
// was changed. Model regions are numbered from 1 in raster order (findRegions); a kept one is left un-erased (a
// false positive); an added one (a face the model missed) is a box, erased as the ellipse inscribed in it or as the
// box itself, and takes the next id. No network pass is run again. No DOM here: the page (app.js) draws and clicks.

import { ADD_SHAPES } from './constants.js';
import { labelRegions } from './masks.js';

/** `box` [x, y, w, h] cut to a width x height image; throws when no pixel of it is inside (clip_box). */
export function clipBox([x, y, w, h], width, height) {
  const [x0, y0, x1, y1] = [Math.max(x, 0), Math.max(y, 0), Math.min(x + w, width), Math.min(y + h, height)];
  if (x1 <= x0 || y1 <= y0) throw new Error(`the added box [${[x, y, w, h]}] lies outside the ${width}x${height} image`);
  return [x0, y0, x1 - x0, y1 - y0];
}

/** Intersection over union of two [x, y, w, h] boxes (box_iou). */
export function boxIou(a, b) {
  const w = Math.min(a[0] + a[2], b[0] + b[2]) - Math.max(a[0], b[0]);
  const h = Math.min(a[1] + a[3], b[1] + b[3]) - Math.max(a[1], b[1]);
  const inter = Math.max(w, 0) * Math.max(h, 0);
  return inter ? inter / (a[2] * a[3] + b[2] * b[3] - inter) : 0;
}

/** Whether pixel (col, row) of a w x h box is in its inscribed ellipse: its centre is (added_shape). */
function inEllipse(col, row, w, h) {
  const [u, v] = [(col + 0.5 - w / 2) / (w / 2), (row + 0.5 - h / 2) / (h / 2)];
  return v * v + u * u <= 1;
}

/** The pixels (Uint8Array, h x w, 1 inside) of an added region in its box: all of them for 'box', those whose centre
 * lies in the inscribed ellipse for 'ellipse' (added_shape). */
export function addedShape(w, h, shape = ADD_SHAPES[0]) {
  if (!ADD_SHAPES.includes(shape)) {
    throw new Error(`unknown shape ${shape} of an added region; choose one of ${ADD_SHAPES.join(', ')}`);
  }
  const inside = new Uint8Array(w * h);
  for (let row = 0; row < h; row++) {
    for (let col = 0; col < w; col++) inside[row * w + col] = shape === 'box' || inEllipse(col, row, w, h) ? 1 : 0;
  }
  return inside;
}

/**
 * The mask and regions after a review (apply_edits): the pixels of each kept region (its connected component of
 * `mask`) left un-erased, then each added shape erased, even over a kept region.
 * mask: the final mask (Uint8Array, width x height); prob: the probabilities; regions: findRegions of mask.
 * keep: ids of regions to keep; add: boxes [x, y, w, h] (clipped to the image), each shaped `addShape`.
 * Returns {mask, regions, labels}: the model's regions (a kept one with erased false), then the added ones
 * ({id, box (clipped), score and meanScore of the probabilities inside the shape, area, faces: 1, source: 'added',
 * erased: true, shape}); labels (Int32Array) numbers each pixel of `mask` with its region's id (0: none).
 * Throws on an unknown id, a box outside the image or an unknown shape.
 */
export function applyEdits(mask, prob, regions, width, height, { keep = [], add = [], addShape = ADD_SHAPES[0] } = {}) {
  const { labels } = labelRegions(mask, width, height);
  const unknown = [...new Set(keep)].filter((id) => !(Number.isInteger(id) && id >= 1 && id <= regions.length));
  if (unknown.length) {
    throw new Error(`no region ${unknown.sort((a, b) => a - b).join(', ')} to keep: the image has ` +
      `${regions.length} region${regions.length === 1 ? '' : 's'}`);
  }
  const out = Uint8Array.from(mask);
  const kept = new Set(keep);
  if (kept.size) for (let i = 0; i < out.length; i++) if (kept.has(labels[i])) out[i] = 0;
  const edited = regions.map((r) => ({ ...r, erased: !kept.has(r.id) }));
  add.forEach((box, index) => {
    const [x, y, w, h] = clipBox(box, width, height);
    const inside = addedShape(w, h, addShape);
    let [score, sum, area] = [-Infinity, 0, 0];
    for (let row = 0; row < h; row++) {
      for (let col = 0; col < w; col++) {
        if (!inside[row * w + col]) continue;
        const i = (y + row) * width + x + col;
        out[i] = 1;
        score = Math.max(score, prob[i]);
        sum += prob[i];
        area += 1;
      }
    }
    edited.push({ id: regions.length + index + 1, box: [x, y, w, h], score, meanScore: sum / area, area, faces: 1,
      source: 'added', erased: true, shape: addShape });
  });
  return { mask: out, regions: edited, labels };
}

/** The id of the region at pixel (x, y), 0 for none: an added region whose shape holds the pixel (the last added
 * first, as it is drawn over the others), else the model region of `labels` (from applyEdits). */
export function regionAt(regions, labels, width, x, y) {
  for (const r of [...regions].reverse()) {
    if (r.source !== 'added') continue;
    const [bx, by, w, h] = r.box;
    const [col, row] = [x - bx, y - by];
    if (col >= 0 && row >= 0 && col < w && row < h && (r.shape === 'box' || inEllipse(col, row, w, h))) return r.id;
  }
  return labels[y * width + x];
}

/** Python's round(value, 4) (both round the exact binary value; they differ only on exact ties). */
const round4 = (value) => Number(value.toFixed(4));

/** The audit record's `edits` object (Edits.to_record): the kept model regions and the added ones. */
export function editsRecord(regions) {
  return {
    kept: regions.filter((r) => r.source === 'model' && !r.erased).map((r) => ({ id: r.id, box: [...r.box] })),
    added: regions.filter((r) => r.source === 'added').map((r) => ({ id: r.id, box: [...r.box], shape: r.shape })),
  };
}

/**
 * The audit record of one reviewed photo, in the schema of the package's reports (image_findings in
 * faceerase/engines/files.py): `n_regions` and `face_estimate` count the erased regions only; `output` is null
 * (the page's image download is separate). The regions must carry their faces; model and settings are given as the
 * page knows them.
 */
export function auditRecord({ input, threshold, regions, model, settings, timestamp = new Date() }) {
  if (regions.some((r) => !Number.isInteger(r.faces))) {
    throw new Error('a record lists the faces of each region: find the regions with their faces (findRegions)');
  }
  const erased = regions.filter((r) => r.erased);
  return {
    timestamp: `${timestamp.toISOString().slice(0, 19)}+00:00`,
    input,
    output: null,
    kind: 'image',
    threshold: round4(threshold),
    regions: regions.map((r) => ({ id: r.id, box: [...r.box], area: r.area, score: round4(r.score),
      mean_score: round4(r.meanScore), faces: r.faces, source: r.source, erased: r.erased })),
    n_regions: erased.length,
    face_estimate: erased.reduce((sum, r) => sum + r.faces, 0),
    edits: editsRecord(regions),
    model,
    settings,
    status: 'anonymized',
  };
}
