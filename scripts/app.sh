#!/usr/bin/env bash
# Install FaceErase into .venv (if needed) and serve the Gradio app on the embedded model in hub/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/python app.py "$@"
