"""Training loop for FaceEraseUNet on WIDER FACE (single process, or DDP under torchrun).

Data comes from a WIDER FACE source (local folder / Hub id) or a pack file and is decoded once, held on
the device and augmented there in batches (:mod:`faceerase.augment`). Under ``torchrun`` (``WORLD_SIZE`` >
1) every rank draws its own batches with a rank-seeded generator; gradients are averaged by DDP and only
rank 0 validates and writes. Outputs in ``out_dir``: ``metrics.jsonl``, ``ckpt.pt`` (model, optimizer,
step) and ``best/`` (``save_pretrained`` folder + model card).
"""

from __future__ import annotations

import json
import math
import os
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from huggingface_hub import HfApi, get_token
from tqdm.auto import tqdm

from faceerase.augment import CropSampler
from faceerase.data import pixel_bounds
from faceerase.evaluation import COVERAGE_THRESHOLD, LARGE_FACE_SIDE, face_coverage
from faceerase.hub import select_device
from faceerase.model import FaceEraseUNet, to_grayscale
from faceerase.modelcard import write_model_card
from faceerase.pack import LABEL_BACKGROUND, LABEL_FACE, PackedImages, load_image_set, load_negatives, pack_images

LOSSES = ("bce_dice", "seed")
BEST_METRICS = ("val_iou", "val_dice", "val_face_recall", "val_face_recall_16px")
SCHEDULES = ("cosine", "constant")
OPTIMIZERS = ("adamw", "adam")


def _opt(default, help: str, group: str, **extra):
    """A :class:`TrainConfig` field with its command-line help and group (``train.py`` builds its parser from them)."""
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, "group": group, **extra})
    return field(default=default, metadata={"help": help, "group": group, **extra})


# Fields that may change when a run is resumed; every other field must equal the checkpoint's.
RESUMABLE_CHANGES = frozenset({"steps", "epochs", "time_budget", "eval_interval", "eval_batch_size", "log_interval",
                               "device", "workers", "out_dir", "resume", "push_to_hub", "command", "progress",
                               "val_limit", "compile"})


@dataclass
class TrainConfig:
    """Everything that defines a training run (JSON-serialisable; recorded in the checkpoint and card).

    Stopping: ``steps``, else ``epochs`` (one epoch = as many crops as training images, over all ranks),
    else 2,000 steps; ``time_budget`` (seconds) stops earlier and, with no step count, drives the schedule.
    The 2018 seed recipe is ``preset="seed", optimizer="adam", lr=1e-3, schedule="constant", loss="seed"``.
    """

    data: str = _opt("../shared/widerface", "WIDER FACE folder, Hub dataset id or pack file (.npz)", "data")
    train_split: str = _opt("train", "training split", "data")
    val_split: str | None = _opt("validation", "validation split; 'none' disables validation", "data")
    val_limit: int | None = _opt(None, "validate on the first N images only", "data")
    image_size: int = _opt(512, "long side of decoded images (never upscaled)", "data")
    negatives: str | None = _opt(None, "folder of face-less photos: crops of them have empty targets", "data")
    negative_fraction: float = _opt(0.2, "share of crops drawn from --negatives", "data")
    mask_shape: str = _opt("box", "training target per face", "data", choices=("box", "ellipse"))
    crop_size: int = _opt(256, "side of the square training crops", "data")
    scale_range: tuple[float, float] = _opt((0.4, 2.5), "log-uniform rescale range of the decoded images", "data")
    workers: int = _opt(4, "image decoding threads", "data")
    preset: str = _opt("fast", "model preset: seed, accurate, fast, live or mobilenet", "model")
    model_overrides: dict = _opt({}, "preset overrides (--in-channels, --base-channels, --depth, --stem-stride)",
                                 "model")
    pretrained: bool = _opt(True, "initialise a pretrained encoder (mobilenet_v2) from ImageNet", "model")
    steps: int | None = _opt(None, "optimizer steps", "optimization")
    epochs: float | None = _opt(None, "epochs (crops = epochs x training images) when --steps is not given",
                                "optimization")
    time_budget: float | None = _opt(None, "stop after this many seconds; drives the schedule without --steps",
                                     "optimization")
    batch_size: int = _opt(16, "crops per step and process", "optimization")
    optimizer: str = _opt("adamw", "optimizer", "optimization", choices=OPTIMIZERS)
    lr: float = _opt(3e-3, "peak learning rate", "optimization")
    min_lr_ratio: float = _opt(0.05, "final learning rate of the cosine schedule, relative to --lr", "optimization")
    weight_decay: float = _opt(1e-4, "AdamW weight decay", "optimization")
    warmup_steps: int = _opt(100, "linear warm-up steps", "optimization")
    schedule: str = _opt("cosine", "learning-rate schedule", "optimization", choices=SCHEDULES)
    loss: str = _opt("bce_dice", "bce_dice, or seed: BCE + 0.1 (1 - soft IoU)", "optimization", choices=LOSSES)
    grad_clip: float = _opt(1.0, "gradient norm clip (0: off)", "optimization")
    eval_interval: int = _opt(500, "validate and checkpoint every N steps", "run")
    eval_batch_size: int = _opt(8, "validation images per pass", "run")
    best_metric: str = _opt("val_iou", "metric that chooses OUT/best", "run", choices=BEST_METRICS)
    log_interval: int = _opt(10, "progress-bar update interval (steps)", "run")
    device: str = _opt("auto", "auto, cpu, cuda or cuda:N", "run")
    bf16: bool = _opt(True, "bf16 autocast on CUDA", "run")
    compile: bool = _opt(False, "torch.compile the model", "run")
    seed: int = _opt(0, "random seed", "run")
    out_dir: str = _opt("runs/default", "output folder (metrics.jsonl, ckpt.pt, best/)", "run", flag="--out")
    resume: bool = _opt(False, "continue from OUT/ckpt.pt (the model and data settings must match it)", "run")
    push_to_hub: str | None = _opt(None, "upload OUT/best to this Hub repo (needs HF_TOKEN or a login)", "run")
    progress: bool = _opt(True, "show a progress bar", "run")
    command: str | None = field(default=None, metadata={"help": None})

    def __post_init__(self):
        for name, value, allowed in (("loss", self.loss, LOSSES), ("schedule", self.schedule, SCHEDULES),
                                     ("optimizer", self.optimizer, OPTIMIZERS),
                                     ("best_metric", self.best_metric, BEST_METRICS)):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if not 0 <= self.negative_fraction < 1:
            raise ValueError(f"negative_fraction must be in [0, 1), got {self.negative_fraction}")
        self.scale_range = tuple(self.scale_range)

    def resume_conflicts(self, saved: dict) -> list[str]:
        """The settings that differ from a checkpoint's config ``saved`` and may not change on resume."""
        current = asdict(self)
        return [f"{name}: checkpoint {saved.get(name)!r}, now {current[name]!r}" for name in current
                if name not in RESUMABLE_CHANGES and name in saved and _jsonable(saved[name]) != _jsonable(current[name])]


def _jsonable(value):
    return json.loads(json.dumps(value, default=str))


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, ignore: torch.Tensor,
                      kind: str = "bce_dice") -> torch.Tensor:
    """Masked loss: BCE + (1 - Dice) (``bce_dice``) or BCE + 0.1 (1 - soft IoU) (``seed``), ignore excluded."""
    logits = logits.float()
    valid = (~ignore).float()
    bce = F.binary_cross_entropy_with_logits(logits, target, weight=valid, reduction="sum")
    bce = bce / valid.sum().clamp_min(1)
    prob = torch.sigmoid(logits) * valid
    target = target * valid
    inter, total = (prob * target).sum(), prob.sum() + target.sum()
    if kind == "seed":
        return bce + 0.1 * (1 - inter / (total - inter + 1e-6))
    return bce + (1 - (2 * inter + 1) / (total + 1))


@torch.no_grad()
def validate(model: FaceEraseUNet, packed: PackedImages, *, batch_size: int = 8, autocast=nullcontext) -> dict:
    """Pixel IoU/Dice of the mask at probability 0.5 with the targets (ignore regions left out) on full (padded)
    validation images, and face recall as :mod:`faceerase.evaluation` counts it (faces not marked invalid, covered
    at its :data:`~faceerase.evaluation.COVERAGE_THRESHOLD`), over all faces and large ones."""
    was_training = model.training
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64, device=packed.images.device)  # inter, union, pred, target
    sizes = packed.sizes.tolist()
    covered, large = [], []
    for start in range(0, len(packed), batch_size):
        images = packed.images[start:start + batch_size].float() / 255
        if model.in_channels == 1:
            images = to_grayscale(images)
        with autocast():
            pred = model(images).float() > 0
        for i, mask in enumerate(pred[:, 0].cpu().numpy(), start):
            (h, w), boxes = sizes[i], packed.boxes[i][~packed.invalid[i]]
            covered.append(face_coverage(mask[:h, :w], boxes) >= COVERAGE_THRESHOLD)
            x0, y0, x1, y1 = pixel_bounds(boxes, h, w).T
            large.append(np.minimum(x1 - x0, y1 - y0) >= LARGE_FACE_SIDE)
        labels = packed.labels[start:start + batch_size]
        valid = (labels == LABEL_BACKGROUND) | (labels == LABEL_FACE)
        target = labels == LABEL_FACE
        pred &= valid
        sums += torch.stack([(pred & target).sum(), (pred | target).sum(), pred.sum(), target.sum()]).double()
    model.train(was_training)
    inter, union, pred_sum, target_sum = sums.tolist()
    covered, large = np.concatenate(covered), np.concatenate(large)
    return {
        "val_iou": inter / max(union, 1),
        "val_dice": 2 * inter / max(pred_sum + target_sum, 1),
        "val_face_recall": float(covered.mean()) if covered.size else 0.0,
        "val_face_recall_16px": float(covered[large].mean()) if large.any() else 0.0,
        "val_images": len(packed),
        "val_faces": len(covered),
    }


def _learning_rate(config: TrainConfig, step: int, progress: float) -> float:
    scale = min(1.0, (step + 1) / config.warmup_steps) if config.warmup_steps else 1.0
    if config.schedule == "cosine":
        floor = config.min_lr_ratio
        scale *= floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return config.lr * scale


def _resolve_device(name: str, local_rank: int) -> torch.device:
    """``name`` (``auto``: CUDA when available) as a device; a bare ``cuda`` becomes this process's GPU."""
    device = select_device(None if name == "auto" else name)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    return device


def _hub_token() -> str:
    token = os.environ.get("HF_TOKEN") or get_token()
    if not token:
        raise RuntimeError("push_to_hub needs a Hugging Face token: set HF_TOKEN or run `hf auth login` "
                           "(checked before training so no run is wasted)")
    return token


def build_model(config: TrainConfig) -> FaceEraseUNet:
    """The untrained model of ``config`` (its preset with ``model_overrides``), its encoder initialised from
    ImageNet when ``config.pretrained`` and the encoder has such weights."""
    model = FaceEraseUNet.from_preset(config.preset, **config.model_overrides)
    if config.pretrained and model.encoder.imagenet_normalized:
        model.load_encoder_weights()
    return model


def train(config: TrainConfig) -> dict:
    """Train a FaceEraseUNet as configured; returns the run summary (also the last ``metrics.jsonl`` line).

    Raises:
        RuntimeError: ``push_to_hub`` is set but no Hugging Face token is available (before any work).
    """
    token = _hub_token() if config.push_to_hub else None
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = _resolve_device(config.device, local_rank)
    if world > 1:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    master = rank == 0
    try:
        return _train(config, device, rank, world, master, token)
    finally:
        if world > 1:
            dist.destroy_process_group()


def _train(config: TrainConfig, device: torch.device, rank: int, world: int, master: bool,
           token: str | None) -> dict:
    out_dir = Path(config.out_dir)
    ckpt_path = out_dir / "ckpt.pt"
    ckpt = None
    if config.resume and ckpt_path.is_file():
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=True)
        conflicts = config.resume_conflicts(ckpt.get("config", {}))
        if conflicts:
            raise ValueError(f"--resume: {ckpt_path} was trained with other settings ({'; '.join(conflicts)}); "
                             "resume with the same settings or start a new --out")
    elif config.resume and master:
        print(f"no checkpoint at {ckpt_path}: starting from scratch")
    torch.manual_seed(config.seed)
    # Channels-last: 1.4x faster training of the MobileNetV2 U-Net on 2 CPU cores (depthwise convolutions).
    model = build_model(config).to(device, memory_format=torch.channels_last)
    divisor = model.size_divisor

    train_set = load_image_set(config.data, config.train_split, long_side=config.image_size,
                               workers=config.workers)
    n_train, n_faces = len(train_set), train_set.num_faces
    weights = None
    if config.negatives:
        negatives = load_negatives(config.negatives, long_side=config.image_size, workers=config.workers)
        n_neg = len(negatives)
        train_set = train_set + negatives
        weights = torch.tensor([(1 - config.negative_fraction) / n_train] * n_train
                               + [config.negative_fraction / n_neg] * n_neg)
        del negatives
    sampler_data = pack_images(train_set, shape=config.mask_shape, device=device)
    del train_set  # the packed tensors hold the pixels from here on
    val_data = None
    if master and config.val_split:
        val_set = load_image_set(config.data, config.val_split, long_side=config.image_size,
                                 workers=config.workers)
        if config.val_limit:
            val_set = val_set.head(config.val_limit)
        val_data = pack_images(val_set, shape=config.mask_shape, multiple=divisor, device=device)
        del val_set

    if config.optimizer == "adamw":
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    step, elapsed_before, best = 0, 0.0, None
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        step, elapsed_before, best = ckpt["step"], ckpt["elapsed"], ckpt["best"]

    if config.steps:
        max_steps = config.steps
    elif config.epochs:
        max_steps = math.ceil(config.epochs * n_train / (config.batch_size * world))
    else:
        max_steps = None if config.time_budget else 2000
    sampler = CropSampler(sampler_data, crop_size=config.crop_size, scale_range=config.scale_range,
                          in_channels=model.in_channels, weights=weights, seed=config.seed + 1000 * rank + 7919 * step)
    raw_model = model
    if config.compile:
        model = torch.compile(model)
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    use_bf16 = config.bf16 and device.type == "cuda"

    def autocast():
        return torch.autocast("cuda", dtype=torch.bfloat16) if use_bf16 else nullcontext()

    config_dict = asdict(config)
    if master:
        out_dir.mkdir(parents=True, exist_ok=True)
        print(f"training {n_train} images ({n_faces} faces) + {len(sampler_data) - n_train} negatives "
              f"on {device} x{world}; "
              f"model {config.preset} {config.model_overrides or ''} "
              f"({sum(p.numel() for p in raw_model.parameters()):,} parameters)")

    def save_checkpoint() -> None:
        torch.save({"model": raw_model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                    "elapsed": elapsed, "best": best, "config": config_dict}, ckpt_path)

    def evaluate_and_save(train_loss: float | None) -> dict:
        nonlocal best
        record = {"step": step, "elapsed_s": round(elapsed, 2), "lr": lr, "train_loss": train_loss,
                  "crops_per_s": round(crops / max(time.time() - window_start, 1e-9), 1)}
        if val_data is not None:
            record.update(validate(raw_model, val_data, batch_size=config.eval_batch_size, autocast=autocast))
        with open(out_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        score = record.get(config.best_metric)
        if val_data is None or best is None or score > best["score"]:
            best = {"score": score, "metrics": record}
            best_dir = out_dir / "best"
            write_model_card(best_dir, record, config_dict, model_config=raw_model.hub_config,
                             command=config.command, repo_id=config.push_to_hub)
            raw_model.save_pretrained(best_dir)
        save_checkpoint()
        return record

    start = time.time()
    elapsed, lr, crops, window_start = elapsed_before, config.lr, 0, time.time()
    loss_sum, loss_count = torch.zeros((), device=device), 0
    record: dict = {}
    bar = tqdm(total=max_steps, initial=step, disable=not (master and config.progress), desc="train",
               dynamic_ncols=True)
    model.train()
    while max_steps is None or step < max_steps:
        elapsed = elapsed_before + time.time() - start
        if world > 1:  # one clock for all ranks: same schedule, same stop
            clock = torch.tensor([elapsed], dtype=torch.float64, device=device)
            dist.broadcast(clock, 0)
            elapsed = clock.item()
        if config.time_budget and elapsed >= config.time_budget:
            break
        progress = max(step / max_steps if max_steps else 0.0,
                       elapsed / config.time_budget if config.time_budget else 0.0)
        lr = _learning_rate(config, step, progress)
        for group in optimizer.param_groups:
            group["lr"] = lr
        images, target, ignore = sampler(config.batch_size)
        images = images.contiguous(memory_format=torch.channels_last)
        with autocast():
            logits = model(images)
        loss = segmentation_loss(logits, target, ignore, config.loss)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        step += 1
        crops += config.batch_size * world
        loss_sum += loss.detach()
        loss_count += 1
        bar.update(1)
        if master and step % config.log_interval == 0:
            bar.set_postfix(loss=f"{loss_sum.item() / loss_count:.4f}", lr=f"{lr:.2e}")
        if master and step % config.eval_interval == 0:
            record = evaluate_and_save(loss_sum.item() / loss_count)
            loss_sum.zero_()
            loss_count, crops, window_start = 0, 0, time.time()
    bar.close()
    elapsed = elapsed_before + time.time() - start
    if master and (not record or record["step"] != step):
        record = evaluate_and_save(loss_sum.item() / loss_count if loss_count else None)
    if world > 1:
        dist.barrier()
    if not master:
        return {"step": step}
    summary = {**record, "best": best["metrics"] if best else None, "out_dir": str(out_dir),
               "model_dir": str(out_dir / "best")}
    if config.push_to_hub:
        api = HfApi(token=token)
        api.create_repo(config.push_to_hub, exist_ok=True)
        api.upload_folder(repo_id=config.push_to_hub, folder_path=out_dir / "best",
                          commit_message=f"FaceErase U-Net, step {best['metrics']['step']}")
        summary["hub_repo"] = config.push_to_hub
    return summary
