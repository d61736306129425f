"""The registry holds current ids only, and unknown names get a helpful error."""

from __future__ import annotations

import fnmatch

import pytest
from test_hygiene import OUTDATED

from course_utils.models.registry import DATASETS, MODELS, dataset_id, model_spec


def test_registry_has_the_lessons_model_and_dataset_ids():
    ids = {s.repo_id for s in MODELS.values()}
    assert {
        "google/ddpm-cat-256",
        "stable-diffusion-v1-5/stable-diffusion-v1-5",
        "CompVis/stable-diffusion-v1-4",
        "stable-diffusion-v1-5/stable-diffusion-inpainting",
        "dreamlike-art/dreamlike-photoreal-2.0",
    } <= ids
    assert set(DATASETS.values()) >= {"huggan/flowers-102-categories", "huggan/smithsonian_butterflies_subset"}


def test_no_outdated_ids():
    for text in [s.repo_id for s in MODELS.values()] + list(DATASETS.values()):
        assert not [pattern for pattern in OUTDATED if pattern in text], text


def test_downloads_are_safetensors_and_cover_required_files():
    for spec in MODELS.values():
        weights = [p for p in spec.allow_patterns if not p.endswith((".json", ".txt", "/*"))]
        assert weights and all(p.endswith(".safetensors") for p in weights), spec.name
        for required in spec.required:
            assert any(fnmatch.fnmatch(required, p) for p in spec.allow_patterns), (spec.name, required)


def test_lookup_by_name_or_repo_id():
    assert model_spec("sd15") is model_spec("stable-diffusion-v1-5/stable-diffusion-v1-5")
    assert dataset_id("flowers") == "huggan/flowers-102-categories"
    assert dataset_id("my/own") == "my/own"


def test_unknown_name_lists_known_ones_and_suggests():
    with pytest.raises(KeyError) as err:
        model_spec("sd-15")
    text = str(err.value)
    assert "Did you mean 'sd15'" in text
    for spec in MODELS.values():
        assert spec.name in text and spec.repo_id in text


def test_runwayml_id_is_refused_with_the_current_one_listed():
    with pytest.raises(KeyError, match="stable-diffusion-v1-5/stable-diffusion-v1-5"):
        model_spec("runwayml/stable-diffusion-v1-5")
