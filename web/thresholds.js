// Threshold strategies that turn a face-probability map into a mask (prob > threshold), as
// faceerase/erase/thresholds.py computes them (compute_threshold).

import { THRESHOLD_MODES } from './constants.js';

/**
 * The threshold for `prob` (Float32Array of values in [0, 1]); pixels strictly above it are face.
 * 'seed': the 2018 rule, bin edge 6 of a 10-bin histogram over [min, max]: min + 0.6 * (max - min).
 * 'fixed': `value`.
 * 'auto': Otsu's threshold of the 256-bin histogram, clamped to [floor, max(floor, ceiling)].
 */
export function computeThreshold(prob, mode, { value, floor, ceiling }) {
  if (mode === 'fixed') return value;
  if (mode === 'seed') {
    let min = Infinity;
    let max = -Infinity;
    for (const p of prob) {
      if (p < min) min = p;
      if (p > max) max = p;
    }
    if (min === max) [min, max] = [min - 0.5, max + 0.5]; // as numpy's histogram widens a zero-width range
    return min + 6 * ((max - min) / 10);
  }
  if (mode === 'auto') return Math.min(Math.max(otsu(prob), floor), Math.max(ceiling, floor));
  throw new Error(`unknown threshold mode ${mode}; choose one of ${THRESHOLD_MODES.join(', ')}`);
}

/** Otsu's threshold on [0, 1] (256 bins): the middle of the best plateau; 0 when fewer than two bins are used. */
function otsu(prob, bins = 256) {
  const hist = new Float64Array(bins);
  for (const p of prob) hist[Math.min(bins - 1, Math.floor(p * bins))] += 1;
  let total = 0;
  let totalMoment = 0;
  for (let i = 0; i < bins; i++) {
    total += hist[i];
    totalMoment += hist[i] * (i + 0.5) / bins;
  }
  const between = new Float64Array(bins - 1);
  let w0 = 0;
  let m0 = 0;
  let best = -1;
  for (let i = 0; i < bins - 1; i++) {
    w0 += hist[i];
    m0 += hist[i] * (i + 0.5) / bins;
    const w1 = total - w0;
    if (w0 > 0 && w1 > 0) {
      between[i] = w0 * w1 * (m0 / w0 - (totalMoment - m0) / w1) ** 2;
      best = Math.max(best, between[i]);
    }
  }
  if (best < 0) return 0;
  let first = -1;
  let last = -1;
  for (let i = 0; i < bins - 1; i++) {
    if (between[i] >= best * (1 - 1e-9)) {
      if (first < 0) first = i;
      last = i;
    }
  }
  return ((first + 1) / bins + (last + 1) / bins) / 2;
}
