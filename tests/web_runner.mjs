// Runs functions of the page's modules (web/*.js) under Node for the parity tests (tests/web_node.py drives it).
// stdin: a JSON list of calls {module, name, args}; args null reads the exported constant instead of calling it.
// stdout: a JSON list of their results, or {"$error": message} for a call that threw. Typed arrays travel both ways
// as {"$typed": "Float32Array", "base64": "..."} (their bytes, little-endian).

import { readFileSync } from 'node:fs';

const WEB = new URL('../web/', import.meta.url);
const TYPES = { Uint8Array, Uint8ClampedArray, Int32Array, Float32Array, Float64Array };

function decode(value) {
  if (Array.isArray(value)) return value.map(decode);
  if (value === null || typeof value !== 'object') return value;
  if ('$typed' in value) {
    const bytes = Buffer.from(value.base64, 'base64');
    return new TYPES[value.$typed](bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
  }
  return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, decode(item)]));
}

function encode(value) {
  if (ArrayBuffer.isView(value)) {
    const bytes = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    return { $typed: value.constructor.name, base64: bytes.toString('base64') };
  }
  if (Array.isArray(value)) return value.map(encode);
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, encode(item)]));
}

const results = [];
for (const { module, name, args } of JSON.parse(readFileSync(0, 'utf8'))) {
  const exports = await import(new URL(module, WEB).href);
  if (!(name in exports)) throw new Error(`web/${module} exports no ${name}`);
  try {
    results.push(encode(args === null ? exports[name] : exports[name](...decode(args))));
  } catch (error) {
    results.push({ $error: error.message });
  }
}
process.stdout.write(JSON.stringify(results));
