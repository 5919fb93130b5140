"""Regression tests of the model shipped in hub/: it must keep masking faces, and little else.

Floors come from the measured numbers in hub/README.md, with a margin for CPU arithmetic differences.
"""

from pathlib import Path

import numpy as np
import pytest

from faceerase.evaluation import collateral, evaluate, face_coverage, load_difficulty_lists
from faceerase.pipeline import DEFAULT_MODEL_DIR, WEIGHTS_NAME, FaceEraser

EXAMPLES = Path(__file__).resolve().parents[1] / "faceerase" / "examples"
WIDERFACE = Path(__file__).resolve().parents[2] / "shared" / "widerface"
ASTRONAUT_FACE = [175, 60, 93, 105]  # x, y, w, h: Eileen Collins' face, eyebrows to chin, as WIDER FACE draws boxes
VAL_SAMPLE = range(0, 400, 10)  # a fixed 40-image sample of the 411 val images
# Measured on 2026-11-26 by benchmarks/examples.py (results/examples_hub.md): easy 0.770, medium 0.635, hard 0.479, collateral 0.82% on this sample;
# astronaut: face box fully covered, collateral 8.6%; chelsea (a cat) 38.7% and coffee 10.0% of the image masked.
VAL_RECALL_FLOOR = {"easy": 0.72, "medium": 0.58, "hard": 0.43}
VAL_COLLATERAL_MAX = 0.012
ASTRONAUT_COLLATERAL_MAX = 0.12
# Known failures of the interim model (a cat's face, a cup): these ceilings only stop them from getting worse.
FACELESS_MASKED_MAX = {"chelsea.jpg": 0.45, "coffee.jpg": 0.14}

pytestmark = pytest.mark.skipif(not (DEFAULT_MODEL_DIR / WEIGHTS_NAME).is_file(),
                                reason=f"no shipped model: {DEFAULT_MODEL_DIR / WEIGHTS_NAME} is missing")


@pytest.fixture(scope="module")
def eraser() -> FaceEraser:
    return FaceEraser(device="cpu")


def test_astronaut_face_is_masked_and_little_else(eraser):
    result = eraser(EXAMPLES / "astronaut.jpg")
    assert face_coverage(result.mask, [ASTRONAUT_FACE])[0] >= 0.5
    assert collateral(result.mask, [ASTRONAUT_FACE]) <= ASTRONAUT_COLLATERAL_MAX
    assert len(result.regions) >= 1
    face = result.anonymized[60:165, 175:268].astype(int) - result.image[60:165, 175:268]
    assert np.abs(face).mean() > 10  # the face pixels really changed


@pytest.mark.parametrize("example", sorted(FACELESS_MASKED_MAX))
def test_face_less_examples_do_not_get_more_masked(eraser, example):
    result = eraser(EXAMPLES / example)
    assert result.mask.mean() <= FACELESS_MASKED_MAX[example]


@pytest.mark.skipif(not WIDERFACE.is_dir(), reason=f"WIDER FACE subset not found at {WIDERFACE}")
def test_val_sample_recall_stays_above_floor(eraser):
    from faceerase.data import load_wider_face

    dataset = load_wider_face(WIDERFACE, "val").select(VAL_SAMPLE)
    lists = load_difficulty_lists(WIDERFACE / "eval_tools" / "ground_truth")
    report = evaluate(eraser, dataset, difficulty_lists=lists, progress=False)
    for difficulty, floor in VAL_RECALL_FLOOR.items():
        assert report["recall"][difficulty] >= floor, (difficulty, report["recall"])
    assert report["collateral"] <= VAL_COLLATERAL_MAX
