// Photos and camera frames as RGBA ImageData, with the checks of faceerase/media/images.py (load_image).

import { MAX_PIXELS, MIN_SIDE } from './constants.js';

export class ImageError extends Error {}

/** A 2D context on a new canvas of this size. */
export function context2d(width, height) {
  const canvas = document.createElement('canvas');
  canvas.width = width;
  canvas.height = height;
  return canvas.getContext('2d', { willReadFrequently: true });
}

function checkSize(width, height, name) {
  if (Math.min(width, height) < MIN_SIDE) {
    throw new ImageError(`${name} is ${width}x${height} pixels; at least ${MIN_SIDE} pixels per side are needed`);
  }
  if (width * height > MAX_PIXELS) {
    throw new ImageError(`${name} is ${width}x${height} = ${(width * height).toLocaleString('en')} pixels, ` +
      `over this page's limit of ${MAX_PIXELS.toLocaleString('en')}`);
  }
}

/** Decode an image File upright (EXIF orientation applied), transparent parts over white, as the Python
 * pipeline reads files. Throws ImageError when the browser cannot decode it or its size is out of range. */
export async function decodeImageFile(file) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, { imageOrientation: 'from-image' });
  } catch {
    throw new ImageError(`${file.name} is not an image this browser can decode` +
      (file.type ? ` (${file.type})` : ''));
  }
  try {
    checkSize(bitmap.width, bitmap.height, file.name);
    const context = context2d(bitmap.width, bitmap.height);
    context.fillStyle = '#ffffff';
    context.fillRect(0, 0, bitmap.width, bitmap.height);
    context.drawImage(bitmap, 0, 0);
    return context.getImageData(0, 0, bitmap.width, bitmap.height);
  } finally {
    bitmap.close();
  }
}

/** The current frame of a playing <video> (a camera stream), drawn into `context` (resized to the frame). */
export function grabFrame(video, context) {
  const { videoWidth: width, videoHeight: height } = video;
  if (context.canvas.width !== width || context.canvas.height !== height) {
    context.canvas.width = width;
    context.canvas.height = height;
  }
  context.drawImage(video, 0, 0);
  return context.getImageData(0, 0, width, height);
}
