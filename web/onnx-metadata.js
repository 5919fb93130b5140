// The metadata_props of an ONNX file (ModelProto field 14: repeated {key = 1, value = 2} string pairs), read
// straight from its protobuf bytes. FaceErase stores its size divisor, input channels, weights hash and
// inference settings there (faceerase/model/onnx_model.py, export_onnx), so the file alone configures the page.

const METADATA_PROPS = 14;

function* fields(bytes, start, end) {
  let pos = start;
  const varint = () => {
    let value = 0;
    for (let shift = 1; ; shift *= 128) {
      if (pos >= end) throw new Error('truncated protobuf');
      const byte = bytes[pos++];
      value += (byte & 0x7f) * shift;
      if (byte < 0x80) return value;
    }
  };
  while (pos < end) {
    const tag = varint();
    const number = Math.floor(tag / 8);
    const wire = tag % 8;
    if (wire === 0) {
      varint();
    } else if (wire === 1 || wire === 5) {
      pos += wire === 1 ? 8 : 4;
    } else if (wire === 2) {
      const length = varint();
      if (pos + length > end) throw new Error('truncated protobuf');
      yield { number, start: pos, end: pos + length };
      pos += length;
    } else {
      throw new Error(`unsupported protobuf wire type ${wire}`);
    }
  }
}

/** The key -> value metadata of the ONNX model in `bytes` (a Uint8Array). Throws when it is not protobuf. */
export function onnxMetadata(bytes) {
  const text = new TextDecoder();
  const metadata = {};
  for (const field of fields(bytes, 0, bytes.length)) {
    if (field.number !== METADATA_PROPS) continue;
    const entry = {};
    for (const part of fields(bytes, field.start, field.end)) {
      entry[part.number] = text.decode(bytes.subarray(part.start, part.end));
    }
    metadata[entry[1] ?? ''] = entry[2] ?? '';
  }
  return metadata;
}
