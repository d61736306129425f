"""Set-up mistakes a new user makes get a message that says what to do."""

from __future__ import annotations

import pytest

from course_utils.course import Course
from course_utils.models.registry import model_spec


def test_moved_repo_is_named_with_its_new_id():
    with pytest.raises(KeyError) as err:
        model_spec("runwayml/stable-diffusion-v1-5")
    text = str(err.value)
    assert text.startswith(
        "'runwayml/stable-diffusion-v1-5' was deleted from the hub; the same weights moved to "
        "'stable-diffusion-v1-5/stable-diffusion-v1-5'"
    )
    assert "v1-4" not in text


def test_unknown_model_message_prints_its_lines():
    with pytest.raises(KeyError) as err:
        model_spec("sd-15")
    assert "\\n" not in str(err.value) and "\nKnown models" in str(err.value)


@pytest.mark.parametrize("bad", ["512", 512.0, None, True])
def test_course_size_needs_a_whole_number(bad):
    course = Course("smoke", "cpu", None, "https://huggingface.co", None, False)
    with pytest.raises(ValueError, match=r"size=.*expected a whole number of at least 1"):
        course.size(bad)
    assert course.size(512) == 64


def test_model_name_that_is_not_text_is_explained():
    with pytest.raises(TypeError, match="expected a short name such as 'sd15'"):
        model_spec(15)


@pytest.mark.parametrize(
    "changes",
    [dict(seed="0"), dict(seed=-1), dict(probe_timeout=-1), dict(probe_timeout=float("nan"))],
)
def test_setup_refuses_a_bad_seed_or_probe_timeout(changes):
    import course_utils

    name = next(iter(changes))
    with pytest.raises(ValueError, match=f"{name}="):
        course_utils.setup(**changes)


def test_generator_seed_must_be_a_whole_number():
    course = Course("smoke", "cpu", None, "https://huggingface.co", None, False)
    with pytest.raises(ValueError, match=r"seed='1': expected a whole number >= 0"):
        course.generator(seed="1")
    assert course.generator(seed=3).initial_seed() == 3


def test_model_name_in_the_wrong_case_gets_a_suggestion():
    with pytest.raises(KeyError, match="Did you mean 'sd15'"):
        model_spec("SD15")


def test_empty_dataset_name_is_refused_rather_than_loading_the_current_folder():
    from course_utils.hub_datasets import load_image_dataset

    with pytest.raises(ValueError, match="name_or_path is empty"):
        load_image_dataset("  ")


def test_a_timed_out_download_is_not_tried_again(monkeypatch):
    """huggingface_hub already retried it 5 times; three more rounds would triple the wait."""
    import httpx
    import huggingface_hub

    from course_utils.models import resolve as models
    from course_utils.models.registry import MODELS

    calls = []

    def stalled(repo_id, allow_patterns):
        calls.append(repo_id)
        raise httpx.ReadTimeout("timed out")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", stalled)
    monkeypatch.setattr(models.time, "sleep", lambda s: None)
    with pytest.raises(httpx.ReadTimeout):
        models.download(MODELS["ddpm-cat"])
    assert len(calls) == 1
