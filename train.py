"""Train a FaceErase U-Net on WIDER FACE: a thin CLI over faceerase.training.loop.train.

    python train.py --data ../shared/widerface --preset mobilenet --negatives ../shared/negatives --time-budget 600 --out runs/m
    torchrun --nproc_per_node 8 train.py --data packs/widerface_512.npz --preset fast --steps 20000 --out runs/ddp

Every option is a field of ``TrainConfig`` (its type, default and help come from there). The old names of
renamed fields (``--image-size`` for ``--input-size``, ``--mask-shape`` for ``--target-shape``) still work, with a
deprecation warning.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import types
import typing

from faceerase.model.loading import ModelLoadError
from faceerase.training.loop import RENAMED_FIELDS, TrainConfig, train
from faceerase.training.widerface import default_widerface_root

# Shorthands that fill ``model_overrides``.
MODEL_OVERRIDES = ("in_channels", "base_channels", "depth", "stem_stride")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


class _OldFlag(argparse.Action):
    """The old flag of a renamed field (hidden from ``--help``): sets the field and prints a deprecation warning."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"train.py: warning: {option_string} is deprecated; use {_flag(self.dest)}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def _base_type(annotation) -> type:
    """``int | None`` -> int, ``tuple[float, float]`` -> tuple, ``str`` -> str."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    return typing.get_origin(annotation) or annotation


def build_parser() -> argparse.ArgumentParser:
    """One option per :class:`TrainConfig` field (``--no-X`` for fields that default to True)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    groups: dict[str, argparse._ArgumentGroup] = {}
    hints = typing.get_type_hints(TrainConfig)
    defaults = TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        meta = f.metadata
        if not meta.get("help"):
            continue
        group = groups.setdefault(meta["group"], parser.add_argument_group(meta["group"]))
        flag = meta.get("flag", _flag(f.name))
        default, kind = getattr(defaults, f.name), _base_type(hints[f.name])
        if f.name == "model_overrides":
            for name in MODEL_OVERRIDES:
                group.add_argument(_flag(name), type=int, help="override the preset")
        elif kind is bool and default:
            group.add_argument(f"--no-{f.name.replace('_', '-')}", dest=f.name, action="store_false",
                               help=f"do not: {meta['help']}")
        elif kind is bool:
            group.add_argument(flag, dest=f.name, action="store_true", help=meta["help"])
        elif kind is tuple:
            group.add_argument(flag, dest=f.name, type=float, nargs=2, default=default, metavar=("MIN", "MAX"),
                               help=meta["help"])
        else:
            group.add_argument(flag, dest=f.name, type=kind, default=default, choices=meta.get("choices"),
                               help=meta["help"])
    choices = {f.name: f.metadata.get("choices") for f in dataclasses.fields(TrainConfig)}
    for old, new in RENAMED_FIELDS.items():
        parser.add_argument(_flag(old), dest=new, action=_OldFlag, type=_base_type(hints[new]), choices=choices[new],
                            default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    parser.set_defaults(data=str(default_widerface_root()))  # $FACEERASE_WIDERFACE, else ../shared/widerface
    return parser


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    """Parse the command line into a :class:`TrainConfig`."""
    values = vars(build_parser().parse_args(argv))
    values["model_overrides"] = {k: values.pop(k) for k in MODEL_OVERRIDES if values.get(k) is not None}
    for name in MODEL_OVERRIDES:
        values.pop(name, None)
    if values.get("val_split") == "none":
        values["val_split"] = None
    command = "python " + shlex.join(["train.py", *(sys.argv[1:] if argv is None else argv)])
    return TrainConfig(**values, command=command)


def main(argv: list[str] | None = None) -> None:
    try:
        summary = train(parse_args(argv))
    except (ValueError, FileNotFoundError, ModuleNotFoundError, ModelLoadError) as error:
        sys.exit(f"train.py: error: {error}")
    if summary.get("out_dir"):
        print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
