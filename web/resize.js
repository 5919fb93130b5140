// Separable resampling with the conventions of OpenCV's cv2.resize, which the Python pipeline uses:
// 'area' (INTER_AREA, for shrinking: each output pixel averages the input pixels it covers, weighted by overlap),
// 'linear' (INTER_LINEAR, pixel centres aligned, edges clamped) and 'nearest' (INTER_NEAREST).

/** For each output index along one axis: the input indices it reads and their weights (flattened; start[d] to
 * start[d + 1] are output d's). */
function axisTaps(source, target, mode) {
  const scale = source / target;
  const index = [];
  const weight = [];
  const start = new Int32Array(target + 1);
  for (let d = 0; d < target; d++) {
    start[d] = index.length;
    if (mode === 'nearest') {
      index.push(Math.min(Math.floor(d * scale), source - 1));
      weight.push(1);
    } else if (mode === 'linear') {
      let s = Math.floor((d + 0.5) * scale - 0.5);
      let f = (d + 0.5) * scale - 0.5 - s;
      if (s < 0) [s, f] = [0, 0];
      if (s >= source - 1) [s, f] = [source - 1, 0];
      index.push(s);
      weight.push(1 - f);
      if (f > 0) {
        index.push(s + 1);
        weight.push(f);
      }
    } else if (mode === 'area') {
      if (scale < 1) throw new Error('area resampling only shrinks');
      const a = d * scale;
      const b = Math.min((d + 1) * scale, source);
      for (let s = Math.floor(a); s < b; s++) {
        const overlap = Math.min(s + 1, b) - Math.max(s, a);
        if (overlap > 1e-9) {
          index.push(s);
          weight.push(overlap / (b - a));
        }
      }
    } else {
      throw new Error(`unknown resampling mode ${mode}`);
    }
  }
  start[target] = index.length;
  return { start, index: Int32Array.from(index), weight: Float64Array.from(weight) };
}

/**
 * Resample interleaved pixels (width x height x channels) to targetWidth x targetHeight.
 * The result has the input's array type: a Uint8ClampedArray rounds and clamps, a Float32Array keeps the values.
 */
export function resize(data, width, height, channels, targetWidth, targetHeight, mode) {
  const tx = axisTaps(width, targetWidth, mode);
  const ty = axisTaps(height, targetHeight, mode);
  const rows = new Float32Array(height * targetWidth * channels); // horizontal pass
  for (let y = 0; y < height; y++) {
    const inRow = y * width * channels;
    const outRow = y * targetWidth * channels;
    for (let x = 0; x < targetWidth; x++) {
      for (let k = tx.start[x]; k < tx.start[x + 1]; k++) {
        const from = inRow + tx.index[k] * channels;
        const to = outRow + x * channels;
        const w = tx.weight[k];
        for (let c = 0; c < channels; c++) rows[to + c] += w * data[from + c];
      }
    }
  }
  const out = new data.constructor(targetWidth * targetHeight * channels); // vertical pass
  const rowLength = targetWidth * channels;
  const sum = new Float64Array(rowLength);
  for (let y = 0; y < targetHeight; y++) {
    sum.fill(0);
    for (let k = ty.start[y]; k < ty.start[y + 1]; k++) {
      const from = ty.index[k] * rowLength;
      const w = ty.weight[k];
      for (let i = 0; i < rowLength; i++) sum[i] += w * rows[from + i];
    }
    out.set(sum, y * rowLength);
  }
  return out;
}

/** An ImageData-like {width, height, data} (RGBA) resampled to width x height. */
export function resizeImage(image, width, height, mode) {
  if (image.width === width && image.height === height) return image;
  return { width, height, data: resize(image.data, image.width, image.height, 4, width, height, mode) };
}
