"""Train a FaceErase U-Net on WIDER FACE: a thin CLI over faceerase.training.train.

    python train.py --data ../shared/widerface --preset fast --time-budget 600 --out runs/fast
    torchrun --nproc_per_node 8 train.py --data packs/widerface_512.npz --preset fast --steps 20000 --out runs/ddp
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from faceerase.training import BEST_METRICS, LOSSES, OPTIMIZERS, SCHEDULES, TrainConfig, train


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    """Parse the command line into a :class:`TrainConfig`."""
    d = TrainConfig()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    data = p.add_argument_group("data")
    data.add_argument("--data", default=d.data, help="WIDER FACE folder, Hub dataset id or pack file (.npz)")
    data.add_argument("--train-split", default=d.train_split)
    data.add_argument("--val-split", default=d.val_split, help="'none' disables validation")
    data.add_argument("--val-limit", type=int, default=d.val_limit, help="validate on the first N images")
    data.add_argument("--image-size", type=int, default=d.image_size, help="long side of decoded images")
    data.add_argument("--mask-shape", choices=("box", "ellipse"), default=d.mask_shape)
    data.add_argument("--crop-size", type=int, default=d.crop_size)
    data.add_argument("--scale-range", type=float, nargs=2, default=d.scale_range, metavar=("MIN", "MAX"))
    data.add_argument("--negatives", default=d.negatives, help="folder of face-less photos (empty targets)")
    data.add_argument("--negative-fraction", type=float, default=d.negative_fraction,
                      help="share of crops drawn from --negatives")
    data.add_argument("--workers", type=int, default=d.workers, help="image decoding threads")
    model = p.add_argument_group("model")
    model.add_argument("--preset", default=d.preset, help="seed, accurate, fast, live or mobilenet")
    model.add_argument("--no-pretrained", action="store_true",
                       help="do not initialise a pretrained encoder (mobilenet_v2) from ImageNet")
    for name in ("in-channels", "base-channels", "depth", "stem-stride"):
        model.add_argument(f"--{name}", type=int, help="override the preset")
    opt = p.add_argument_group("optimization")
    opt.add_argument("--steps", type=int, default=d.steps)
    opt.add_argument("--epochs", type=float, default=d.epochs)
    opt.add_argument("--time-budget", type=float, default=d.time_budget, help="seconds")
    opt.add_argument("--batch-size", type=int, default=d.batch_size, help="per process")
    opt.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer)
    opt.add_argument("--lr", type=float, default=d.lr)
    opt.add_argument("--min-lr-ratio", type=float, default=d.min_lr_ratio)
    opt.add_argument("--weight-decay", type=float, default=d.weight_decay)
    opt.add_argument("--warmup-steps", type=int, default=d.warmup_steps)
    opt.add_argument("--schedule", choices=SCHEDULES, default=d.schedule)
    opt.add_argument("--loss", choices=LOSSES, default=d.loss)
    opt.add_argument("--grad-clip", type=float, default=d.grad_clip)
    run = p.add_argument_group("run")
    run.add_argument("--eval-interval", type=int, default=d.eval_interval)
    run.add_argument("--eval-batch-size", type=int, default=d.eval_batch_size)
    run.add_argument("--best-metric", choices=BEST_METRICS, default=d.best_metric)
    run.add_argument("--device", default=d.device, help="auto, cpu, cuda or cuda:N")
    run.add_argument("--no-bf16", action="store_true", help="disable bf16 autocast on CUDA")
    run.add_argument("--compile", action="store_true", help="torch.compile the model")
    run.add_argument("--seed", type=int, default=d.seed)
    run.add_argument("--out", default=d.out_dir, help="output directory")
    run.add_argument("--resume", action="store_true", help="continue from OUT/ckpt.pt")
    run.add_argument("--push-to-hub", metavar="REPO_ID", help="upload the best model (needs HF_TOKEN or login)")
    run.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    overrides = {k: v for k, v in (("in_channels", a.in_channels), ("base_channels", a.base_channels),
                                   ("depth", a.depth), ("stem_stride", a.stem_stride)) if v is not None}
    command = "python " + shlex.join(["train.py", *(sys.argv[1:] if argv is None else argv)])
    return TrainConfig(
        data=a.data, train_split=a.train_split, val_split=None if a.val_split == "none" else a.val_split,
        val_limit=a.val_limit, image_size=a.image_size, preset=a.preset, model_overrides=overrides,
        pretrained=not a.no_pretrained, negatives=a.negatives, negative_fraction=a.negative_fraction,
        mask_shape=a.mask_shape, crop_size=a.crop_size, scale_range=tuple(a.scale_range), steps=a.steps,
        epochs=a.epochs, time_budget=a.time_budget, batch_size=a.batch_size, optimizer=a.optimizer, lr=a.lr,
        min_lr_ratio=a.min_lr_ratio, weight_decay=a.weight_decay, warmup_steps=a.warmup_steps,
        schedule=a.schedule, loss=a.loss, grad_clip=a.grad_clip, eval_interval=a.eval_interval,
        eval_batch_size=a.eval_batch_size, best_metric=a.best_metric, device=a.device, bf16=not a.no_bf16,
        compile=a.compile, workers=a.workers, seed=a.seed, out_dir=a.out, resume=a.resume,
        push_to_hub=a.push_to_hub, command=command, progress=not a.no_progress)


def main(argv: list[str] | None = None) -> None:
    summary = train(parse_args(argv))
    if summary.get("out_dir"):
        print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
