"""``faceerase calibrate`` (the rule is in faceerase/training/calibration.py) on this checkout's data, its result kept
with the benchmarks: WIDER FACE from ../shared/widerface, the face-less photos of negatives/calibration, the candidates
and the choice in results/calibration_<name>.{json,md} (the JSON with the machine, and ``improves_on_hub``: whether
the choice beats hub/'s recorded one, results/calibration_hub.json, by the rule's ``improves``). Every other option
is passed on as given.

    python scripts/make_negatives.py --pets ../shared/negatives/images --out negatives
    python benchmarks/calibrate.py --model hub --name hub --write
"""

from __future__ import annotations

import argparse
import json
import sys

from common import REPO, RESULTS, WIDERFACE, machine

from faceerase import cli
from faceerase.training.calibration import improves


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Other options: faceerase calibrate --help")
    parser.add_argument("--model", required=True, help="model folder or Hub id")
    parser.add_argument("--name", default="latest", help="results/calibration_<name>.{json,md}")
    args, options = parser.parse_known_args()
    RESULTS.mkdir(exist_ok=True)
    report = RESULTS / f"calibration_{args.name}.json"
    code = cli.main(["calibrate", args.model, "--data", str(WIDERFACE), "--negatives",
                     str(REPO / "negatives" / "calibration"), "--json", str(report), "--markdown",
                     str(report.with_suffix(".md")), *options])
    if code == 0:
        result = {**json.loads(report.read_text()), "machine": machine()}
        shipped = RESULTS / "calibration_hub.json"
        if args.name != "hub" and shipped.exists():
            result["improves_on_hub"] = improves(result["best"], json.loads(shipped.read_text())["best"])
            print(f"improves on hub/ by the rule: {result['improves_on_hub']}")
        report.write_text(json.dumps(result, indent=2) + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
