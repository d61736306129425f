"""Checks for lesson 03's exercises (AutoPipeline). Each compares the learner's answer with what diffusers itself
does: its own task mappings, its own `from_pipe`, its own image-to-image timestep code."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from course_utils.exercises import not_attempted, verdict
from course_utils.i18n import tr

TASKS = ("text2image", "image2image", "inpainting")


def _mapping(task: str):
    from diffusers.pipelines import auto_pipeline as ap

    mappings = {
        "text2image": ap.AUTO_TEXT2IMAGE_PIPELINES_MAPPING,
        "image2image": ap.AUTO_IMAGE2IMAGE_PIPELINES_MAPPING,
        "inpainting": ap.AUTO_INPAINT_PIPELINES_MAPPING,
    }
    if task not in mappings:
        raise ValueError(f"task={task!r}: expected one of {TASKS}.")
    return mappings[task]


def auto_class_name(task: str, class_name: str) -> str:
    """The class AutoPipeline builds for `task` from a checkpoint whose model_index.json names `class_name`, or
    'ValueError' when diffusers cannot map it (diffusers' own lookup, no download)."""
    from diffusers.pipelines.auto_pipeline import _get_task_class

    found = _get_task_class(_mapping(task), class_name, throw_error_if_not_exist=False)
    return "ValueError" if found is None else found.__name__


def check_auto_class(task: str, class_name: str, answer: Any) -> bool:
    """Pass when `answer` (a class or its name, or 'ValueError') is what AutoPipeline does for `task` and
    `class_name`."""
    if answer is None:
        return not_attempted(
            tr(
                "which class AutoPipeline builds for {task} from a {class_name} checkpoint",
                task=task,
                class_name=class_name,
            )
        )
    given = answer if isinstance(answer, str) else getattr(answer, "__name__", repr(answer))
    expected = auto_class_name(task, class_name)
    if given == expected:
        if expected == "ValueError":
            return verdict(
                True,
                tr(
                    "Right: no {task} pipeline is linked to {class_name}, so AutoPipeline raises a "
                    "ValueError. Load the explicit class instead (if diffusers has one).",
                    task=task,
                    class_name=class_name,
                ),
                "",
            )
        return verdict(True, tr("Right: {class_name} -> {expected}.", class_name=class_name, expected=expected), "")
    return verdict(
        False,
        "",
        tr(
            "{given} is not it. Find the family key of {class_name} in one of the AUTO_*_PIPELINES_MAPPING "
            "dictionaries, then look that key up in the {task} mapping (a missing key means a ValueError).",
            given=given,
            class_name=class_name,
            task=task,
        ),
    )


def check_from_pipe(source, answer, scheduler_class: str = "EulerDiscreteScheduler") -> bool:
    """Pass when `answer` is an image-to-image pipeline made from `source` that shares every model (no weights loaded
    again) but has its own `scheduler_class` scheduler, while `source` keeps its scheduler."""
    from course_utils.memory import module_components

    if answer is None:
        return not_attempted(
            tr(
                "an image-to-image pipeline from pipe_t2i with its own {scheduler_class}",
                scheduler_class=scheduler_class,
            )
        )
    problem = _from_pipe_problem(source, answer, scheduler_class)
    if problem:
        return verdict(False, "", problem)
    return verdict(
        True,
        tr(
            "{name} shares {models} with pipe_t2i and has its own {scheduler_class}.",
            name=type(answer).__name__,
            models=", ".join(module_components(source)),
            scheduler_class=scheduler_class,
        ),
        "",
    )


def _from_pipe_problem(source, answer, scheduler_class: str) -> str:
    """What is wrong with `answer` for check_from_pipe, in the learner's language ("" when nothing is)."""
    from course_utils.memory import module_components, shared_components

    if not hasattr(answer, "components"):
        return tr("answer is a {kind}, not a diffusers pipeline.", kind=type(answer).__name__)
    name = type(answer).__name__
    if "Img2Img" not in name:
        return tr(
            "answer is a {name}; an image-to-image pipeline was asked for (AutoPipelineForImage2Image.from_pipe).",
            name=name,
        )
    shared = shared_components(source, answer)
    copied = [n for n in module_components(source) if n in shared and not shared[n]]
    if copied:
        return tr(
            "{copied}: new objects, so their weights were loaded again. Build it with "
            "AutoPipelineForImage2Image.from_pipe(pipe_t2i, scheduler=...) instead of from_pretrained.",
            copied=", ".join(copied),
        )
    scheduler = type(answer.scheduler).__name__
    if scheduler != scheduler_class:
        return tr(
            "its scheduler is a {scheduler}, not a {scheduler_class}: pass "
            "scheduler={scheduler_class}.from_config(pipe_t2i.scheduler.config) to from_pipe.",
            scheduler=scheduler,
            scheduler_class=scheduler_class,
        )
    if answer.scheduler is source.scheduler or type(source.scheduler).__name__ == scheduler_class:
        return tr(
            "pipe_t2i's scheduler was changed too (it is now a {now}): "
            "give the new scheduler to from_pipe instead of assigning it to pipe_t2i, then restore "
            "pipe_t2i.scheduler.",
            now=type(source.scheduler).__name__,
        )
    return ""


def steps_run_by(pipe, num_inference_steps: int, strength: float) -> int:
    """Denoising steps an image-to-image call would run, computed by the pipeline class's own get_timesteps."""
    scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)  # a copy: leave the learner's one untouched
    scheduler.set_timesteps(num_inference_steps)
    _, steps = type(pipe).get_timesteps(SimpleNamespace(scheduler=scheduler), num_inference_steps, strength, "cpu")
    return int(steps)


def check_strength_steps(pipe, num_inference_steps: int, wanted_steps: int, answer: Any) -> bool:
    """Pass when image-to-image with `strength=answer` runs exactly `wanted_steps` of `num_inference_steps` steps."""
    if answer is None:
        return not_attempted(
            tr(
                "a strength that runs {wanted_steps} of {num_inference_steps} steps",
                wanted_steps=wanted_steps,
                num_inference_steps=num_inference_steps,
            )
        )
    from course_utils.checks.pipeline_inputs import check_strength

    try:
        check_strength(answer)
    except (TypeError, ValueError) as err:
        problem = str(err)  # the error message of check_strength: it stays in English, like every raised error
        return verdict(False, "", problem)
    steps = steps_run_by(pipe, num_inference_steps, answer)
    return verdict(
        steps == wanted_steps,
        tr(
            "strength={answer} runs {steps} of {num_inference_steps} steps: it skips the {skipped} "
            "noisiest steps, adds the matching amount of noise to the image, and denoises from there.",
            answer=answer,
            steps=steps,
            num_inference_steps=num_inference_steps,
            skipped=num_inference_steps - steps,
        ),
        tr(
            "strength={answer} runs {steps} steps, not {wanted_steps}: diffusers runs "
            "int(num_inference_steps x strength) of them.",
            answer=answer,
            steps=steps,
            wanted_steps=wanted_steps,
        ),
    )
