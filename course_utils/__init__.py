"""Helpers for the Diffusers course. Importing this package is cheap and imports no Hugging Face library,
so `course_utils.setup()` can configure the hub before diffusers, transformers or huggingface_hub read it."""

from course_utils.course import Course, setup
from course_utils.models.registry import DATASETS, MODELS, model_spec

__all__ = ["Course", "setup", "MODELS", "DATASETS", "model_spec"]
