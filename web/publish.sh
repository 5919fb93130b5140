#!/usr/bin/env bash
# Assemble the page into a self-contained static site, e.g. a Hugging Face static Space:
#   web/publish.sh DEST
#   hf upload USER/SPACE DEST . --repo-type space
# DEST (new or empty) gets the page, its README.md (the Space's card), the model (a copy of hub/model.onnx) and
# the three onnxruntime-web files the page loads, at the paths it loads them from; any static server can host it.
set -euo pipefail
web="$(cd "$(dirname "$0")" && pwd)"
dest="${1:?usage: web/publish.sh DEST (a new or empty folder)}"
ort="$web/node_modules/onnxruntime-web/dist"
[ -d "$ort" ] || { echo "$ort is missing: run npm ci in web/" >&2; exit 1; }
[ -f "$web/../hub/model.onnx" ] || { echo "$web/../hub/model.onnx is missing: faceerase export-onnx hub" >&2; exit 1; }
if [ -e "$dest" ] && [ -n "$(ls -A "$dest")" ]; then echo "$dest is not empty" >&2; exit 1; fi
mkdir -p "$dest/node_modules/onnxruntime-web/dist"
cp "$web"/index.html "$web"/style.css "$web"/README.md "$web"/*.js "$dest/"
cp "$web/../hub/model.onnx" "$dest/model.onnx"
cp "$ort/ort.wasm.min.mjs" "$ort/ort-wasm-simd-threaded.mjs" "$ort/ort-wasm-simd-threaded.wasm" \
  "$dest/node_modules/onnxruntime-web/dist/"
echo "$dest: $(du -sh "$dest" | cut -f1), serve it with any static server (python -m http.server -d $dest)"
