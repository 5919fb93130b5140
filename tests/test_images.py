"""load_image: every supported input becomes RGB uint8, every bad one a clear InvalidImageError; write_image writes
atomically with no metadata but the EXIF given; check_single_frame refuses animations."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from faceerase.media.images import (MAX_PIXELS, MAX_PIXELS_ENV, MIN_SIDE, InvalidImageError, check_single_frame,
                                    default_max_pixels, load_image, write_image)

EXAMPLES = Path(__file__).resolve().parents[1] / "faceerase" / "examples"


def _gradient(h: int = 40, w: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx * 4, yy * 6, 255 - xx * 2], axis=-1).astype(np.uint8)


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


@pytest.mark.parametrize("kind", ["path", "str", "bytes", "pil", "array"])
def test_every_source_type_gives_the_same_rgb_array(kind, tmp_path):
    rgb = _gradient()
    path = tmp_path / "image.png"
    Image.fromarray(rgb).save(path)
    source = {"path": path, "str": str(path), "bytes": path.read_bytes(),
              "pil": Image.open(path), "array": rgb}[kind]
    out = load_image(source)
    assert out.dtype == np.uint8 and out.shape == (40, 64, 3) and out.flags.c_contiguous
    np.testing.assert_array_equal(out, rgb)


def test_exif_orientation_is_applied(tmp_path):
    rgb = _gradient(40, 64)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    Image.fromarray(rgb).save(path, quality=95, exif=exif)
    out = load_image(path)
    assert out.shape == (64, 40, 3)
    expected = np.rot90(rgb, k=-1)
    assert np.abs(out.astype(int) - expected).mean() < 4


def test_rgba_is_composited_over_white(tmp_path):
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:10, :, 3] = 255
    rgba[10:, :, 3] = 0
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(path)
    out = load_image(path)
    np.testing.assert_array_equal(out[0, 0], (200, 0, 0))
    np.testing.assert_array_equal(out[-1, -1], (255, 255, 255))
    np.testing.assert_array_equal(load_image(rgba), out)


def test_palette_with_transparency(tmp_path):
    image = Image.new("P", (20, 20), 1)
    image.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    path = tmp_path / "palette.png"
    image.save(path, transparency=0)
    np.testing.assert_array_equal(load_image(path)[5, 5], (10, 200, 30))


def test_grayscale_8_and_16_bit_png(tmp_path):
    gray8 = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (20, 1))
    Image.fromarray(gray8).save(tmp_path / "gray8.png")
    out8 = load_image(tmp_path / "gray8.png")
    assert out8.shape == (20, 32, 3)
    np.testing.assert_array_equal(out8[..., 1], gray8)

    gray16 = gray8.astype(np.uint16) * 257
    Image.fromarray(gray16).save(tmp_path / "gray16.png")
    assert Image.open(tmp_path / "gray16.png").mode.startswith("I")
    out16 = load_image(tmp_path / "gray16.png")
    np.testing.assert_array_equal(out16[..., 0], gray8)


def test_16_bit_rgb_png(tmp_path):
    rgb = _gradient()
    path = tmp_path / "rgb16.png"
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR).astype(np.uint16) * 257)
    np.testing.assert_array_equal(load_image(path), rgb)


def test_cmyk_jpeg(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (32, 24), (0, 255, 255, 0)).save(path, quality=95)
    out = load_image(path)
    assert out.shape == (24, 32, 3)
    assert out[..., 0].mean() > 200 and out[..., 1:].mean() < 40


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(b""), "empty"),
    (lambda p: p.write_bytes(b"this is a text file, not a picture" * 10), "not a recognised image"),
    (lambda p: p.write_bytes(_encode(Image.fromarray(_gradient(200, 200)), "JPEG")[:600]), "truncated or corrupt"),
    (lambda p: p.write_bytes(_encode(Image.fromarray(_gradient(200, 200)), "PNG")[:300]), "truncated or corrupt"),
])
def test_bad_files_raise_clear_errors(tmp_path, make, message):
    path = tmp_path / "bad.img"
    make(path)
    with pytest.raises(InvalidImageError, match=message):
        load_image(path)
    with pytest.raises(InvalidImageError, match=message):
        load_image(path.read_bytes())


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(InvalidImageError, match="no such file"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(InvalidImageError, match="not a file"):
        load_image(tmp_path)


def test_size_limit(tmp_path):
    Image.fromarray(_gradient(8, 8)).save(tmp_path / "tiny.png")
    with pytest.raises(InvalidImageError, match=f"8x8 pixels; at least {MIN_SIDE}"):
        load_image(tmp_path / "tiny.png")
    assert load_image(_gradient(MIN_SIDE, MIN_SIDE)).shape == (MIN_SIDE, MIN_SIDE, 3)
    with pytest.raises(InvalidImageError, match="at least"):
        load_image(np.zeros((0, 0, 3), np.uint8))


def test_decompression_bomb_gets_a_clear_message(tmp_path, monkeypatch):
    path = tmp_path / "large.png"
    Image.fromarray(_gradient(100, 100)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(InvalidImageError, match="over 2,000 pixels, more than PIL decodes .*MAX_IMAGE_PIXELS"):
        load_image(path)
    with pytest.raises(InvalidImageError, match="over 2,000 pixels, over the limit of 1,500 pixels"):
        load_image(path, max_pixels=1500)


def test_pixel_limit_refuses_large_images_before_decoding(tmp_path):
    header_only = _encode(Image.new("L", (10_000, 4_100)), "PNG")[:100]  # decoding it would fail: truncated
    message = (r"is 10000x4100 = 41,000,000 pixels, over the limit of 40,000,000 pixels; raise the limit with "
               rf"max_pixels \(--max-pixels of the faceerase command and of app.py\) or the {MAX_PIXELS_ENV}")
    assert MAX_PIXELS == 40_000_000
    with pytest.raises(InvalidImageError, match="the image data " + message):
        load_image(header_only)
    rgb = _gradient(40, 64)
    path = tmp_path / "small.png"
    Image.fromarray(rgb).save(path)
    np.testing.assert_array_equal(load_image(path, max_pixels=40 * 64), rgb)
    for source in (path, path.read_bytes(), Image.open(path)):
        with pytest.raises(InvalidImageError, match="64x40 = 2,560 pixels, over the limit of 2,000 pixels"):
            load_image(source, max_pixels=2000)
    assert load_image(rgb, max_pixels=2000).shape == rgb.shape  # arrays are already decoded: no limit


def test_pixel_limit_from_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "small.png"
    Image.fromarray(_gradient(40, 64)).save(path)
    monkeypatch.setenv(MAX_PIXELS_ENV, "2_000")
    assert default_max_pixels() == 2000
    with pytest.raises(InvalidImageError, match="limit of 2,000 pixels"):
        load_image(path)
    assert load_image(path, max_pixels=5000).shape == (40, 64, 3)
    for bad in ("many", "0", "-5"):
        monkeypatch.setenv(MAX_PIXELS_ENV, bad)
        with pytest.raises(ValueError, match=f"{MAX_PIXELS_ENV} must be a positive whole number"):
            load_image(path)
    monkeypatch.delenv(MAX_PIXELS_ENV)
    assert default_max_pixels() == MAX_PIXELS


def test_array_conversions():
    rgb = _gradient()
    np.testing.assert_array_equal(load_image(rgb.astype(np.float32) / 255), rgb)
    gray = rgb[..., 0]
    np.testing.assert_array_equal(load_image(gray), np.repeat(gray[..., None], 3, axis=2))
    np.testing.assert_array_equal(load_image(gray[..., None]), load_image(gray))


@pytest.mark.parametrize("array, message", [
    (np.zeros((20, 20, 2), np.uint8), "shape"),
    (np.zeros((2, 20, 20, 3), np.uint8), "shape"),
    (np.zeros(400, np.uint8), "shape"),
    (np.zeros((20, 20, 3), np.uint16), "dtype uint16"),
    (np.zeros((20, 20, 3), np.int64), "dtype int64"),
    (np.zeros((20, 20, 3), bool), "dtype bool"),
    (np.full((20, 20, 3), 2.0), r"\[0, 1\]"),
    (np.full((20, 20, 3), -0.1, np.float32), r"\[0, 1\]"),
    (np.full((20, 20, 3), np.nan, np.float32), "finite"),
])
def test_bad_arrays_raise_clear_errors(array, message):
    with pytest.raises(InvalidImageError, match=message):
        load_image(array)


def test_unsupported_type():
    with pytest.raises(InvalidImageError, match="unsupported image type list"):
        load_image([[0, 1], [2, 3]])


@pytest.mark.parametrize(("suffix", "fmt", "lossless"), [
    (".jpg", "JPEG", False), (".JPEG", "JPEG", False), (".png", "PNG", True), (".webp", "WEBP", False),
    (".tif", "TIFF", True), (".bmp", "BMP", True), (".gif", "GIF", False)])
def test_write_image_takes_the_format_from_the_extension(tmp_path, suffix, fmt, lossless):
    pixels = load_image(EXAMPLES / "coffee.jpg")
    write_image(pixels, tmp_path / f"out{suffix}")
    assert [p.name for p in tmp_path.iterdir()] == [f"out{suffix}"]  # no temporary file left
    with Image.open(tmp_path / f"out{suffix}") as image:
        assert image.format == fmt and image.size == (600, 400)
        assert fmt == "TIFF" or len(image.getexif()) == 0  # a TIFF's own tags are its EXIF IFD
        assert not {"exif", "icc_profile", "xmp"} & set(image.info)
        written = np.asarray(image.convert("RGB"), np.int16)
    difference = np.abs(written - pixels).mean()
    assert difference == 0 if lossless else difference < 12


def test_write_image_writes_only_the_exif_given(tmp_path):
    exif = Image.Exif()
    exif[0x010F] = "FaceCam"
    pixels = load_image(EXAMPLES / "chelsea.jpg")
    write_image(pixels, tmp_path / "cat.jpg", exif=exif.tobytes())
    with Image.open(tmp_path / "cat.jpg") as image:
        assert dict(image.getexif()) == {0x010F: "FaceCam"}


def test_write_image_failures_leave_nothing(tmp_path, monkeypatch):
    pixels = load_image(EXAMPLES / "chelsea.jpg")
    with pytest.raises(ValueError, match=r"to .*out\.pdf: its extension must be one of .*\.png"):
        write_image(pixels, tmp_path / "out.pdf")
    write_image(pixels, tmp_path / "kept.png")
    before = (tmp_path / "kept.png").read_bytes()

    def failing_save(self, fp, *args, **kwargs):
        fp.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(OSError, match=f"cannot write {tmp_path / 'kept.png'}: disk full"):
        write_image(pixels[::-1], tmp_path / "kept.png")
    assert [p.name for p in tmp_path.iterdir()] == ["kept.png"] and (tmp_path / "kept.png").read_bytes() == before


def test_check_single_frame_refuses_animations_only(tmp_path):
    cat = Image.open(EXAMPLES / "chelsea.jpg")
    cat.save(tmp_path / "anim.webp", save_all=True, append_images=[cat.rotate(90), cat.rotate(180)])
    with pytest.raises(InvalidImageError, match=r"unsupported: multi-frame image \(3 frames\)"):
        check_single_frame(tmp_path / "anim.webp")
    cat.save(tmp_path / "phone.jpg", "MPO", save_all=True, append_images=[cat.rotate(90)])  # a preview: dropped
    (tmp_path / "broken.png").write_bytes(b"not an image")  # load_image says why
    for name in ("phone.jpg", "broken.png"):
        check_single_frame(tmp_path / name)
    check_single_frame(EXAMPLES / "astronaut.jpg")
