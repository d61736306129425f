"""setup() and the Course object: mode, sizes, generators, and where models come from."""

from __future__ import annotations

import json
import os
import time

import pytest
import torch

import course_utils
from course_utils.course import Course, pick_dtype, pick_mode
from course_utils.models import resolve as models
from course_utils.models.registry import MODELS


def make_course(tmp_path, mode="smoke", hub_ok=False) -> Course:
    return Course(mode, "cpu", torch.float32, "https://huggingface.co", tmp_path, hub_ok)


def test_setup_prints_status_and_decides_offline_fast(monkeypatch, capsys):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("COURSE_MODE", "smoke")
    course_utils.setup(probe_timeout=1.0)  # the first call imports torch and diffusers: not what is timed here
    capsys.readouterr()
    start = time.perf_counter()
    course = course_utils.setup(probe_timeout=1.0)  # probes the hub again (the offline mode is setup()'s own)
    elapsed = time.perf_counter() - start
    out = capsys.readouterr().out
    for field in ("mode", "device", "dtype", "threads", "endpoint", "hub", "cache", "token"):
        assert f"  {field}" in out
    assert course.mode == "smoke" and course.device == "cpu" and course.dtype == torch.float32
    if not course.hub_ok:
        assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert elapsed < 5.0  # the probe gives up after about 1 s; the imports are loaded


def test_smoke_mode_runs_on_one_thread_and_full_mode_gets_them_back(monkeypatch):
    from course_utils import course as course_module

    threads = torch.get_num_threads()
    monkeypatch.setattr(course_module, "_THREADS_BEFORE_SETUP", [])
    try:
        torch.set_num_threads(2)
        assert course_module.pick_threads("smoke").startswith("1 ") and torch.get_num_threads() == 1
        assert course_module.pick_threads("full").startswith("2 ") and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


def test_setup_never_prints_the_token(monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", "hf_" + "x" * 34)
    course_utils.setup(mode="smoke")
    out = capsys.readouterr().out
    assert "xxxx" not in out and "found in HF_TOKEN" in out


def test_mode_typo_is_explained(monkeypatch):
    monkeypatch.setenv("COURSE_MODE", "smok")
    with pytest.raises(ValueError, match="Did you mean 'smoke'"):
        pick_mode(None, "cpu")
    with pytest.raises(ValueError, match="COURSE_MODE"):
        course_utils.setup()


def test_mode_defaults_follow_the_hardware(monkeypatch):
    monkeypatch.delenv("COURSE_MODE", raising=False)
    assert pick_mode(None, "cpu") == "smoke" and pick_mode(None, "cuda") == "full"
    assert pick_mode("full", "cpu") == "full"


def test_dtype_per_device():
    assert pick_dtype("cpu", "full") == torch.float32
    assert pick_dtype("cuda", "smoke") == torch.float32
    assert pick_dtype("mps", "full") == torch.float16


def test_steps_and_sizes(tmp_path):
    smoke, full = make_course(tmp_path), make_course(tmp_path, "full")
    assert (smoke.steps(50), smoke.steps(2), full.steps(50)) == (20, 2, 50)
    assert (smoke.steps(250, smoke=100), smoke.steps(5, smoke=100), full.steps(250, smoke=100)) == (100, 5, 250)
    with pytest.raises(ValueError, match="smoke"):
        smoke.steps(50, smoke=0)
    assert (smoke.size(512), smoke.size(256), smoke.size(128), full.size(512)) == (64, 32, 32, 512)
    for bad in (0, -3, 2.5):
        with pytest.raises(ValueError, match="steps"):
            smoke.steps(bad)
    with pytest.raises(ValueError, match=r"size\(500\).*multiple of 8.*Try size\(504\)"):
        full.size(500)
    with pytest.raises(ValueError, match="size=0"):
        full.size(0)


def test_rehearsal_caps_every_loop_and_keeps_full_sizes(tmp_path):
    rehearsal = Course("full", "cpu", torch.float32, "https://huggingface.co", tmp_path, False, rehearsal=True)
    assert (rehearsal.steps(50), rehearsal.steps(400, smoke=10), rehearsal.steps(1)) == (2, 2, 1)
    assert rehearsal.steps(50, rehearsal=4) == 4 and make_course(tmp_path).steps(50, rehearsal=4) == 20
    assert rehearsal.size(512) == 512 and not rehearsal.smoke
    assert rehearsal.sweep([5, 10, 25, 50]) == [5, 50] and rehearsal.sweep([3]) == [3]
    assert make_course(tmp_path).sweep([5, 10, 25, 50]) == [5, 10, 25, 50]
    with pytest.raises(ValueError, match="rehearsal=0"):
        rehearsal.steps(50, rehearsal=0)
    with pytest.raises(ValueError, match="no values"):
        rehearsal.sweep([])


def test_setup_rehearses_full_mode_and_says_so(monkeypatch, capsys):
    monkeypatch.delenv("COURSE_MODE", raising=False)
    monkeypatch.setenv("COURSE_REHEARSAL", "1")
    course = course_utils.setup()
    out = capsys.readouterr().out
    assert course.rehearsal and course.mode == "full" and course.steps(50) == 2
    assert "REHEARSAL" in out and "2 steps" in out
    monkeypatch.setenv("COURSE_REHEARSAL", "0")
    assert not course_utils.setup(mode="full").rehearsal
    monkeypatch.delenv("COURSE_REHEARSAL")
    assert course_utils.setup(mode="full", rehearsal=True).rehearsal


def test_rehearsal_refuses_bad_values(monkeypatch):
    monkeypatch.setenv("COURSE_REHEARSAL", "maybe")
    with pytest.raises(ValueError, match="COURSE_REHEARSAL='maybe'"):
        course_utils.setup(mode="full")
    monkeypatch.delenv("COURSE_REHEARSAL")
    with pytest.raises(ValueError, match="cannot be combined with smoke"):
        course_utils.setup(mode="smoke", rehearsal=True)
    with pytest.raises(ValueError, match="rehearsal='yes'"):
        course_utils.setup(rehearsal="yes")


NVIDIA_SMI = """
| NVIDIA-SMI 535.104.05             Driver Version: 535.104.05   CUDA Version: 12.2     |
|   0  NVIDIA GeForce RTX 3090        On  | 00000000:01:00.0 Off |                  N/A |
"""


def test_a_gpu_that_pytorch_cannot_use_is_explained(monkeypatch):
    import shutil
    import subprocess

    from course_utils.course import unusable_gpu

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/nvidia-smi" if name == "nvidia-smi" else None)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, NVIDIA_SMI, ""))
    message = unusable_gpu()
    assert "driver 535.104.05" in message and "CUDA up to 12.2" in message and "not above cu122" in message
    assert torch.__version__ in message
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert unusable_gpu() == "", "no nvidia-smi: nothing to explain"


def test_generator_is_seeded(tmp_path):
    course = make_course(tmp_path)
    a = torch.randn(4, generator=course.generator(7))
    assert torch.equal(a, torch.randn(4, generator=course.generator(7)))
    assert not torch.equal(a, torch.randn(4, generator=course.generator(8)))


def test_smoke_model_is_the_course_trained_model_and_says_so(tmp_path, capsys):
    folder = make_course(tmp_path).model("ddpm-cat")
    assert folder.name == "emoji-ddpm" and (folder / "config.json").exists()
    out = capsys.readouterr().out
    assert "course model 'emoji-ddpm', trained on the shipped emoji, standing in for the real repo" in out
    assert "google/ddpm-cat-256" in out


def test_smoke_model_falls_back_to_a_tiny_standin_without_the_trained_one(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path / "no-data"))  # no data/models/ there
    folder = make_course(tmp_path).model("ddpm-cat")
    assert (folder / "STANDIN.md").exists()
    assert "stand-in, tiny random weights" in capsys.readouterr().out


def test_unknown_model_name(tmp_path):
    with pytest.raises(KeyError, match="Known models"):
        make_course(tmp_path).model("stable-diffusion")


def _fake_cache(hf_home, repo_id, files):
    """Lay out a repo in the hub cache the way huggingface_hub does (refs/main -> snapshots/<commit>)."""
    repo = hf_home / "hub" / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    for name in files:
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / name).write_text("{}")
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    return snapshot


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """Point huggingface_hub at an empty cache in tmp_path for the duration of one test."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path


def test_full_mode_prefers_the_hub_cache(hub_cache, monkeypatch):
    spec = MODELS["ddpm-cat"]
    snapshot = _fake_cache(hub_cache, spec.repo_id, spec.required)
    monkeypatch.setattr(models, "download", lambda spec: pytest.fail("must not download when cached"))
    found = models.resolve(spec, smoke=False, hub_ok=True, standin_root=hub_cache / "standins")
    assert found.source == "hub cache" and found.path == snapshot


def test_incomplete_cache_is_not_used(hub_cache, monkeypatch):
    spec = MODELS["ddpm-cat"]
    _fake_cache(hub_cache, spec.repo_id, ["config.json"])  # weights missing: an interrupted download
    assert models.from_cache(spec) is None


def test_full_mode_downloads_when_reachable(hub_cache, monkeypatch):
    spec = MODELS["ddpm-cat"]
    monkeypatch.setattr(models, "download", lambda s: hub_cache / "downloaded")
    found = models.resolve(spec, smoke=False, hub_ok=True, standin_root=hub_cache / "standins")
    assert found.source == "downloaded"


def test_failed_download_falls_back_to_full_size_standin(hub_cache, monkeypatch):
    spec = MODELS["ddpm-cat"]

    def broken(spec):
        raise ConnectionError("mirror is down")

    monkeypatch.setattr(models, "download", broken)
    monkeypatch.setattr(models, "get_standin", lambda root, spec, size: root / f"{spec.name}-{size}")
    with pytest.warns(UserWarning, match="RANDOM weights"):
        found = models.resolve(spec, smoke=False, hub_ok=True, standin_root=hub_cache / "standins")
    assert found.source == "stand-in" and found.path.name == "ddpm-cat-full"
    assert "mirror is down" in str(found) and "RANDOM" in str(found)


def test_unreachable_hub_uses_full_size_standin_without_trying(hub_cache, monkeypatch):
    monkeypatch.setattr(models, "download", lambda spec: pytest.fail("must not try the network"))
    monkeypatch.setattr(models, "get_standin", lambda root, spec, size: root / f"{spec.name}-{size}")
    found = models.resolve(MODELS["sd15"], smoke=False, hub_ok=False, standin_root=hub_cache)
    assert found.path.name == "sd15-full" and "hub unreachable" in str(found)


def test_ddpm_cat_fake_snapshot_loads_like_the_real_layout(hub_cache, standin_root):
    """A cached snapshot in the real flat layout loads with the lesson's plain from_pretrained calls."""
    from diffusers import DDPMScheduler, UNet2DModel

    from course_utils.models.standins import get_standin

    built = get_standin(standin_root, MODELS["ddpm-cat"], "tiny")
    snapshot = _fake_cache(hub_cache, "google/ddpm-cat-256", [])
    for path in built.iterdir():
        (snapshot / path.name).write_bytes(path.read_bytes())
    found = models.from_cache(MODELS["ddpm-cat"])
    assert found == snapshot
    UNet2DModel.from_pretrained(found)
    assert json.loads((found / "scheduler_config.json").read_text())["_class_name"] == "DDPMScheduler"
    DDPMScheduler.from_pretrained(found)


def test_download_retries_then_succeeds(monkeypatch, tmp_path):
    import huggingface_hub

    spec = MODELS["ddpm-cat"]
    for name in spec.required:
        (tmp_path / name).write_text("{}")
    calls = []

    def flaky(repo_id, allow_patterns):
        calls.append(repo_id)
        if len(calls) < 3:
            import httpx  # huggingface_hub 2.x raises httpx errors, which are not OSErrors

            raise httpx.RemoteProtocolError("peer closed connection")
        return str(tmp_path)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", flaky)
    monkeypatch.setattr(models.time, "sleep", lambda s: None)
    assert models.download(spec) == tmp_path and len(calls) == 3


def test_download_gives_up_after_the_last_attempt(monkeypatch):
    import huggingface_hub

    def down(repo_id, allow_patterns):
        raise ConnectionError("mirror is down")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", down)
    monkeypatch.setattr(models.time, "sleep", lambda s: None)
    with pytest.raises(ConnectionError):
        models.download(MODELS["ddpm-cat"], attempts=2)


def test_setup_hides_loading_bars_but_keeps_download_bars(capsys, monkeypatch):
    from diffusers.utils import logging as diffusers_logging
    from huggingface_hub.utils import are_progress_bars_disabled, enable_progress_bars
    from transformers.utils import logging as transformers_logging

    diffusers_logging.enable_progress_bar()
    transformers_logging.enable_progress_bar()
    enable_progress_bars()
    monkeypatch.setenv("COURSE_MODE", "smoke")
    course_utils.setup()
    assert not diffusers_logging.is_progress_bar_enabled()
    assert not transformers_logging.is_progress_bar_enabled()
    assert not are_progress_bars_disabled()  # downloads still show theirs
    assert "download bars on" in capsys.readouterr().out


def test_quantizer_filters_drop_only_their_own_messages(caplog):
    """The filters drop the known import-time messages; another warning of the same logger still shows."""
    import logging

    from course_utils.progress import QUANTIZER_WARNINGS, quiet_quantizer_warnings

    quiet_quantizer_warnings()
    quiet_quantizer_warnings()  # a second setup() adds no second filter
    for name, phrase in QUANTIZER_WARNINGS.items():
        logger = logging.getLogger(name)
        assert sum(getattr(f, "phrase", None) == phrase for f in logger.filters) == 1
        with caplog.at_level(logging.WARNING, logger=name):
            logger.warning("prefix: %s, and more", phrase)
            logger.warning("something else went wrong")
        assert [r.getMessage() for r in caplog.records if r.name == name] == ["something else went wrong"]
        caplog.clear()
