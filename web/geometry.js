// Image geometry of the network path, as faceerase/erase/geometry.py defines it.

/** Python's round(): halves go to the even neighbour (round(2.5) == 2), as the Python pipeline rounds sizes. */
export function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Bottom and right padding that make height x width multiples of divisor, and the mode: 'reflect' when the
 * padding is smaller than the image, else 'replicate' (repeat the edge). */
export function paddingFor(height, width, divisor) {
  const ph = (divisor - (height % divisor)) % divisor;
  const pw = (divisor - (width % divisor)) % divisor;
  return { ph, pw, mode: ph < height && pw < width ? 'reflect' : 'replicate' };
}

/** Long side of the network input: inputSize, or the image's own long side when inputSize is 0 or, without
 * upscale, larger than the image. */
export function networkLongSide(height, width, inputSize, upscale = false) {
  const longSide = Math.max(height, width);
  return inputSize && (upscale || inputSize < longSide) ? inputSize : longSide;
}
