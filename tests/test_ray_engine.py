"""The Ray engine of ``faceerase anonymize``: the local engine's bytes, records and summary from a pool of Ray actors;
resume; a model that does not load; settings Ray cannot run; the message without Ray."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray.data", reason="Ray Data is not installed (pip install 'faceerase[ray]')")
pytestmark = pytest.mark.slow  # a Ray cluster, and Ray in subprocesses

import ray

from faceerase import cli
from faceerase.engines.files import UP_TO_DATE, JobOptions, PlanError
from faceerase.engines.ray_engine import anonymize_with_ray
from faceerase.erase.pipeline import ONNX_NAME, EraserSpec
from faceerase.model.onnx_model import export_onnx
from faceerase.model.settings import EraseSettings
from fixtures_app import REPO, make_low_model, write_image, write_video

EXAMPLES = REPO / "faceerase" / "examples"
VARYING = ("timestamp", "seconds")  # what differs between two runs of the same files


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray of 2 CPUs for the module (the engine uses this connection and leaves it open)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tests' low model with its model.onnx: actors run onnxruntime without importing torch."""
    folder = tmp_path_factory.mktemp("low-model-onnx")
    model = make_low_model()
    model.save_pretrained(folder)
    export_onnx(model, folder / ONNX_NAME)
    return folder


def settings(model_dir: Path) -> list[str]:
    """The model and settings of every run here: ``seed`` masks a region in every image and frame."""
    return ["--model", str(model_dir), "--input-size", "64", "--threshold", "seed"]


def digests(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` by relative path."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def records(report: Path) -> dict[str, dict]:
    """The report's records by input, without what varies between runs."""
    lines = [json.loads(line) for line in report.read_text().splitlines()]
    return {r["input"]: {k: v for k, v in r.items() if k not in VARYING} for r in lines}


def test_the_command_starts_its_own_ray_quietly(model_dir, tmp_path):
    """The first test, before the module's Ray: relative paths, reported absolute; no Ray logs or progress bars."""
    (tmp_path / "in").mkdir()
    write_image(tmp_path / "in/a.png")
    command = [sys.executable, "-m", "faceerase.cli", "anonymize", "in", "-o", "out", "--report", "r.jsonl",
               "--engine", "ray", "--actors", "1", *settings(model_dir)]
    done = subprocess.run(command, cwd=tmp_path, check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"1 file: 1 anonymized, 0 failed, 0 skipped; 1 region \(about 1 face\); [\d.]+ s\n",
                        done.stdout)
    assert done.stderr == ""  # not even Ray's core_worker line that actor restarts may fail (ray-project/ray#57733)
    [record] = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert (record["status"], record["input"], record["output"]) == ("anonymized", str(tmp_path / "in/a.png"),
                                                                             str(tmp_path / "out/a.png"))
    assert (tmp_path / "out/a.png").is_file()


@pytest.fixture(scope="module")
def runs(ray_cluster, model_dir, tmp_path_factory):
    """One folder (two photos, a corrupt image, a video, a text file) through the local and the Ray engine."""
    root = tmp_path_factory.mktemp("engines")
    src = root / "in"
    (src / "trip").mkdir(parents=True)
    shutil.copy(EXAMPLES / "astronaut.jpg", src / "astronaut.jpg")
    write_image(src / "trip/b.png", size=(80, 60))
    (src / "trip/corrupt.jpg").write_bytes(b"\xff\xd8\xff garbage")
    write_video(src / "clip.mp4", frames=5)
    (src / "notes.txt").write_text("not a photo")
    inputs = digests(src)
    results = {}
    for engine in ("local", "ray"):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(["anonymize", str(src), "-o", str(root / engine), "--engine", engine,
                             "--report", str(root / f"{engine}.jsonl"), *settings(model_dir)])
        results[engine] = code, out.getvalue(), err.getvalue()
    return {"root": root, "src": src, "inputs": inputs, "results": results}


def test_the_ray_engine_writes_the_local_engines_bytes_records_and_summary(runs):
    root, src = runs["root"], runs["src"]
    codes = {engine: code for engine, (code, _, _) in runs["results"].items()}
    assert codes == {"local": 1, "ray": 1}  # the corrupt image failed, the run went on
    assert digests(src) == runs["inputs"]  # no input touched
    local, on_ray = digests(root / "local"), digests(root / "ray")
    assert sorted(on_ray) == ["astronaut.jpg", "clip.mp4", "trip/b.png"]
    assert on_ray == local  # byte-identical outputs
    assert runs["inputs"]["astronaut.jpg"] != on_ray["astronaut.jpg"]  # and anonymized
    by_input = records(root / "ray.jsonl")
    assert sorted(by_input) == sorted(str(src / name) for name in
                                      ("astronaut.jpg", "clip.mp4", "trip/b.png", "trip/corrupt.jpg", "notes.txt"))
    assert {i: {k: v for k, v in r.items() if k != "output"} for i, r in by_input.items()} == {
        i: {k: v for k, v in r.items() if k != "output"} for i, r in records(root / "local.jsonl").items()}
    failed = by_input[str(src / "trip/corrupt.jpg")]
    assert failed["status"] == "failed" and "not a recognised image format" in failed["error"]
    assert failed["output"] == str(root / "ray/trip/corrupt.jpg")
    assert by_input[str(src / "notes.txt")]["reason"] == "not an image or video (.txt)"
    assert by_input[str(src / "clip.mp4")]["frames"] == 5
    assert by_input[str(src / "astronaut.jpg")]["model"]["backend"] == "onnx"


def test_the_ray_engine_prints_the_local_engines_summary_and_errors(runs):
    corrupt = runs["src"] / "trip/corrupt.jpg"
    summaries = []
    for _, out, err in runs["results"].values():
        assert f"error: {corrupt} is not a recognised image format" in err and "Traceback" not in err
        summaries.append(re.sub(r"; [\d.]+ s$", "", out.strip()))
    assert summaries[0] == summaries[1]
    assert summaries[1].startswith("5 files: 3 anonymized, 1 failed, 1 skipped (1 not an image or video); ")


def test_resume_skips_up_to_date_outputs_and_appends_to_the_report(runs, model_dir, tmp_path):
    src, out, report = runs["src"], tmp_path / "out", tmp_path / "report.jsonl"
    shutil.copytree(runs["root"] / "ray", out)  # keeps the times: every output is up to date
    shutil.copy(runs["root"] / "ray.jsonl", report)
    before = digests(out)
    (out / "trip/b.png").unlink()
    written = {name: (out / name).stat().st_mtime_ns for name in ("astronaut.jpg", "clip.mp4")}
    seen: list[dict] = []
    eraser_args = EraserSpec(model=str(model_dir), settings=EraseSettings(input_size=64, threshold_mode="seed"))
    summary = anonymize_with_ray([src], out, eraser_args=eraser_args, options=JobOptions(resume=True),
                                 report=report, on_record=seen.append)
    assert (summary.total, summary.anonymized, summary.failed) == (5, 1, 1)
    assert summary.skipped == {UP_TO_DATE: 2, "not an image or video": 1}
    assert digests(out) == before  # b.png written again, the same bytes
    assert {name: (out / name).stat().st_mtime_ns for name in written} == written
    lines = [json.loads(line) for line in report.read_text().splitlines()]
    assert len(lines) == 5 + 5 and lines[5:] == seen  # appended, as on_record saw them
    assert {r["input"]: r["status"] for r in seen if r.get("reason") == UP_TO_DATE} == {
        str(src / "astronaut.jpg"): "skipped", str(src / "clip.mp4"): "skipped"}


def test_plan_errors_come_before_ray_runs(tmp_path):
    write_image(tmp_path / "a.png")
    with pytest.raises(PlanError, match="would overwrite an input"):
        anonymize_with_ray([tmp_path / "a.png"], tmp_path / "a.png")
    with pytest.raises(PlanError, match=f"the report {tmp_path / 'a.png'} is an input or an output"):
        anonymize_with_ray([tmp_path / "a.png"], tmp_path / "out", report=tmp_path / "a.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


def test_a_model_that_does_not_load_stops_the_run_before_any_file(ray_cluster, tmp_path, capsys):
    write_image(tmp_path / "a.png")
    (tmp_path / "report.jsonl").write_text("the last run's report\n")
    code = cli.main(["anonymize", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--engine", "ray",
                     "--report", str(tmp_path / "report.jsonl"), "--model", str(tmp_path / "nope")])
    assert code == 2
    assert capsys.readouterr().err.strip() == f"faceerase: error: cannot load the model: no model folder at " \
                                              f"{tmp_path / 'nope'}"
    assert not (tmp_path / "out").exists() and (tmp_path / "report.jsonl").read_text() == "the last run's report\n"


@pytest.mark.parametrize(("options", "message"), [
    (["--actors", "3"], "--actors only applies to --engine ray"),
    (["--engine", "local", "--gpus-per-actor", "1"], "--gpus-per-actor only applies to --engine ray"),
    (["--engine", "ray", "--gpus-per-actor", "1", "--backend", "onnx"],
     "cannot run on Ray: GPU actors run the torch backend"),
    (["--engine", "ray", "--device", "cuda"], "cannot run on Ray: actors without GPUs run on the CPU"),
    (["--engine", "ray", "--address", "127.0.0.1:1"],
     "cannot run on Ray: cannot reach the Ray cluster at 127.0.0.1:1: [Errno 111] Connection refused"),
])
def test_settings_ray_cannot_run_are_usage_errors(tmp_path, capsys, options, message):
    write_image(tmp_path / "a.png")
    assert cli.main(["anonymize", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), *options]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_without_ray_the_engine_says_how_to_install_it(tmp_path):
    write_image(tmp_path / "a.png")
    command = ["anonymize", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--engine", "ray"]
    without_ray = ("import sys; sys.modules['ray'] = None  # import ray fails as if it were not installed\n"
                   f"from faceerase.cli import main; sys.exit(main({command!r}))")
    done = subprocess.run([sys.executable, "-c", without_ray], check=False, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == ("faceerase: error: the ray engine needs Ray Data, which is not installed: "
                           "pip install 'faceerase[ray]'\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


def test_an_actor_that_dies_fails_every_file_without_a_record(tmp_path):
    """When Ray stops mid-run (an actor killed by a file that crashes its process), the files that got no record
    fail with the reason, so the summary and the audit report count every one of them."""
    from types import SimpleNamespace

    from faceerase.engines.files import FileJob
    from faceerase.engines.ray_engine import _records

    jobs = [FileJob(tmp_path / f"{n}.jpg", tmp_path / "out" / f"{n}.jpg", "image") for n in "abc"]
    first = {"input": str(jobs[0].source), "status": "anonymized"}

    def rows():
        yield {"record": json.dumps(first)}
        raise ray.exceptions.ActorDiedError()

    dataset = SimpleNamespace(iter_rows=rows)
    fake_ray = SimpleNamespace(exceptions=ray.exceptions, data=SimpleNamespace(
        from_items=lambda *a, **k: SimpleNamespace(map_batches=lambda *a, **k: dataset),
        ActorPoolStrategy=lambda **k: None))
    records = list(_records(fake_ray, jobs, None, JobOptions(), actors=1, resources={}))
    assert records[0] == first
    assert [r["input"] for r in records[1:]] == [str(jobs[1].source), str(jobs[2].source)]
    assert all(r["status"] == "failed" and "ActorDiedError" in r["error"] and "died unexpectedly" in r["error"]
               for r in records[1:])
