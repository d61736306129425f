"""Shared fixtures: a private HF_HOME per test session, so tests never read or write a learner's real cache; one
CPU thread for the tiny training models."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def standin_root(tmp_path_factory):
    """A folder where stand-ins are built once per test session."""
    return tmp_path_factory.mktemp("standins")


@pytest.fixture(scope="module")
def one_thread():
    """The training tests' models are tiny: one CPU thread runs them faster than two that mostly wait for each other."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _shipped(name: str):
    from course_utils.models.emoji import REQUIRED, models_dir

    folder = models_dir() / name
    missing = [f for f in REQUIRED[name] if not (folder / f).exists()]
    assert not missing, (
        f"{folder} lacks {missing}: the course's trained models ship with the repo (make models rebuilds them)"
    )
    return folder


@pytest.fixture(scope="session")
def emoji_ddpm_folder():
    """data/models/emoji-ddpm: the course's trained pixel-space DDPM (ddpm-cat layout)."""
    return _shipped("emoji-ddpm")


@pytest.fixture(scope="session")
def emoji_sd_folder():
    """data/models/emoji-sd: the course's trained text-to-image model (Stable Diffusion layout)."""
    return _shipped("emoji-sd")


@pytest.fixture(scope="session")
def olah_mirror(tmp_path_factory):
    """olah serving the course's models and a flowers-like dataset as a hub mirror, offline; stopped
    at the end."""
    import mirror

    from course_utils.folders import offline_dataset_dir
    from course_utils.models.emoji import models_dir

    images = sorted((offline_dataset_dir() / "train").glob("*.png"))[:12]
    parquet = mirror.flowers_parquet(images)
    served = mirror.course_mirror(tmp_path_factory.mktemp("olah"), models_dir(), parquet)
    yield served
    mirror.stop(served)


# The files that take longest on 2 cores, longest first (measured with `make test`'s --durations). pytest-xdist hands
# whole files to the workers in collection order (--dist loadfile --no-loadscope-reorder in the Makefile), so a long
# file collected last would leave one worker running alone at the end; starting with the long ones lets the short
# ones fill the gaps. The files below take 7 s or more; a file not listed runs after these, in the usual order.
LONG_FIRST = (
    "tests/test_mirror.py",
    "tests/test_mirror_faults.py",
    "notebooks/09_flow_matching_and_transformers.ipynb",
    "notebooks/07_text_to_image_from_scratch.ipynb",
    "notebooks/05_train_ddpm.ipynb",
    "tests/test_emoji_models.py",
    "notebooks/10_big_models_small_gpus.ipynb",
    "tests/test_emoji_sd3.py",
    "tests/test_training.py",
    "notebooks/08_lora_finetuning.ipynb",
    "notebooks/03_autopipeline.ipynb",
    "notebooks/02_stable_diffusion_deconstructed.ipynb",
    "notebooks/01_denoising_loop.ipynb",
    "tests/test_lesson03.py",
    "tests/test_rehearsal.py",
    "tests/test_checkpoint_kill.py",
    "notebooks/06_attention_maps.ipynb",
    "notebooks/04_datasets.ipynb",
    "tests/test_bench.py",
    "tests/test_course.py",
    "tests/test_lora.py",
    "tests/test_plain_calls.py",
    "tests/test_paths.py",
    "notebooks/00_setup.ipynb",
)


def pytest_collection_modifyitems(session, config, items):
    """Put the items of the LONG_FIRST files first (in that order), keeping the order within each file."""
    root = config.rootpath

    def rank(item) -> int:
        path = item.path.relative_to(root).as_posix() if item.path.is_relative_to(root) else str(item.path)
        return LONG_FIRST.index(path) if path in LONG_FIRST else len(LONG_FIRST)

    items.sort(key=rank)
