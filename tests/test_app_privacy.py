"""What the app keeps of its users' photos: on disk after it stops (real ``python app.py`` subprocesses), and
across sessions (its server in this process: ``conftest.app_urls``), driven through gradio_client."""

from __future__ import annotations

import fcntl
import os
import signal
from pathlib import Path

import pytest
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")
from fixtures_app import AppServer, write_image  # noqa: E402

pytestmark = pytest.mark.slow  # app servers: Gradio alone takes seconds to import

CONTROLS = ("auto", 0.5, "inpaint_telea", 2, "predicted", 256)  # mode, fixed, method, dilation, shape, size


def erase(client, image: Path, method: str = "inpaint_telea") -> tuple:
    mode, fixed, _, dilation, shape, size = CONTROLS
    return client.predict(gradio_client.handle_file(str(image)), mode, fixed, method, dilation, shape, size,
                          api_name="/erase")


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


@pytest.fixture
def gps_photo(tmp_path: Path) -> Path:
    """A JPEG carrying GPS coordinates in its EXIF, as phones write them."""
    path = tmp_path / "holiday.jpg"
    write_image(path, size=(120, 90))
    exif = Image.Exif()
    exif.get_ifd(0x8825).update({1: "N", 2: (48.0, 51.0, 29.0), 3: "E", 4: (2.0, 17.0, 40.0)})  # GPSInfo
    Image.open(path).save(path, exif=exif)
    return path


def test_sigterm_stops_the_server_and_leaves_nothing_of_the_upload(low_model_dir, gps_photo, tmp_path):
    temp = tmp_path / "gradio-temp"
    server = AppServer(str(low_model_dir), tmp_path / "app.log", temp_dir=temp).wait()
    try:
        client = gradio_client.Client(server.url, verbose=False, download_files=tmp_path / "downloads")
        assert "region" in erase(client, gps_photo)[5]
        upload = gps_photo.read_bytes()
        assert any(p.read_bytes() == upload for p in files_under(temp)), "the upload should be on the server"
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(30) == 0, server.log.read_text()
    finally:
        server.stop()
    assert files_under(temp) == []


def test_a_starting_server_removes_only_what_its_own_stopped_servers_left(low_model_dir, tmp_path):
    temp = tmp_path / "gradio-temp"
    stale, live, foreign = temp / "faceerase-server-stale", temp / "faceerase-server-live", temp / "other-app"
    for folder in (stale / "faceerase-request", live, foreign):
        folder.mkdir(parents=True)
    write_image(stale / "faceerase-request" / "image.png")
    (foreign / "upload.jpg").write_bytes(b"another app's upload")
    (temp / "faceerase-notes.txt").write_text("not a server folder")
    lock = os.open(live, os.O_RDONLY)  # a server still running holds its folder's lock
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    server = AppServer(str(low_model_dir), tmp_path / "app.log", temp_dir=temp)
    try:
        server.wait()
        assert not stale.exists()
        assert live.is_dir()
        assert (foreign / "upload.jpg").read_bytes() == b"another app's upload"
        assert (temp / "faceerase-notes.txt").exists()
    finally:
        server.stop()
        os.close(lock)


def test_cached_probabilities_serve_only_the_session_that_computed_them(app_urls, tmp_path):
    photo = tmp_path / "shared.png"
    write_image(photo, size=(100, 70))
    alice, bob = (gradio_client.Client(app_urls["ok"], verbose=False, download_files=tmp_path / name)
                  for name in ("alice", "bob"))
    assert "network skipped" not in erase(alice, photo)[5]
    assert "network skipped" not in erase(bob, photo)[5]  # the same photo, sent by another session
    assert "network skipped" in erase(alice, photo, method="blur")[5]  # a session reuses its own maps
    assert "network skipped" in erase(bob, photo, method="solid")[5]


def test_the_download_of_a_photo_with_gps_carries_no_metadata(app_urls, gps_photo, tmp_path):
    client = gradio_client.Client(app_urls["ok"], verbose=False, download_files=tmp_path / "downloads")
    result = Path(erase(client, gps_photo)[4])
    assert result.name == "holiday-anonymized.jpg"
    with Image.open(result) as image:
        assert image.format == "JPEG"
        assert not image.getexif() and "exif" not in image.info
    assert b"Exif" not in result.read_bytes()
