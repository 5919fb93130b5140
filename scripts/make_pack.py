"""Write a training pack (one .npz of JPEGs + boxes) from a WIDER FACE source, for GPU machines without `datasets`.

    python scripts/make_pack.py --data ../shared/widerface --out packs/widerface_512.npz
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from faceerase.training.pack import load_image_set, write_pack  # noqa: E402
from faceerase.training.widerface import default_widerface_root  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(default_widerface_root()),
                        help="local WIDER FACE folder or Hub id ($FACEERASE_WIDERFACE, else ../shared/widerface)")
    parser.add_argument("--out", default="packs/widerface_512.npz", help="pack file to write (.npz)")
    parser.add_argument("--splits", default="train,validation", help="comma-separated splits to include")
    parser.add_argument("--long-side", type=int, default=512, help="resize images so the long side is this")
    parser.add_argument("--quality", type=int, default=82, help="JPEG quality")
    parser.add_argument("--workers", type=int, default=4, help="decoding/encoding threads")
    args = parser.parse_args()

    start = time.time()
    splits = tuple(s.strip() for s in args.splits.split(",") if s.strip())
    write_pack(args.out, args.data, splits, long_side=args.long_side, quality=args.quality, workers=args.workers)
    size = Path(args.out).stat().st_size / 2**20
    print(f"wrote {args.out} ({size:.1f} MiB) in {time.time() - start:.1f}s")
    for split in splits:
        image_set = load_image_set(args.out, split, long_side=None, workers=args.workers)
        print(f"  {split}: {len(image_set)} images, {image_set.num_faces} faces")


if __name__ == "__main__":
    main()
