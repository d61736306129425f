"""Lesson 03 plumbing: the course photos, input checks that explain themselves, memory options chosen from the free GPU
memory (offload, VAE tiling; SDPA attention is already the default), measuring time and peak memory, and checking that
pipelines made with `from_pipe` share their weights."""
from __future__ import annotations

import gc
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from PIL import Image, ImageOps

from course_utils.paths import data_root
from course_utils.checks.values import did_you_mean, require_multiple_of_8, require_positive_int

GIB = 2**30
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
# Rough activation memory of one SD 1.x generation at 512x512 in 16-bit, with classifier-free guidance (batch 2) and
# SDPA attention, split into the UNet loop and the VAE decode (the larger part); both grow with the pixel count. With
# VAE tiling the decode works on one tile at a time. The lesson's table measures the real figures on your GPU.
UNET_ACTIVATION_BYTES_512 = GIB // 4
VAE_ACTIVATION_BYTES_512 = 3 * GIB // 4
HEADROOM = 1.2  # keep 20 % of the free memory spare for the CUDA context, fragmentation and other tensors


# ---------------------------------------------------------------------------------------------------------- photos
def photos_dir() -> Path:
    """The repository's data/images folder (or $COURSE_DATA_DIR/images), where the lesson's photos live."""
    return data_root() / "images"


def photo_names() -> list[str]:
    """Short names of the photos shipped in data/images ('astronaut', 'cat', 'coffee')."""
    folder = photos_dir()
    return sorted(p.stem for p in folder.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES) if folder.is_dir() else []


def photo_path(name_or_path: str | Path, argument: str = "image") -> Path:
    """Resolve a short photo name ('cat') or a file path; a missing file raises FileNotFoundError saying what to do."""
    text = str(name_or_path)
    names = photo_names()
    if text in names:
        return next(p for p in photos_dir().iterdir() if p.stem == text and p.suffix.lower() in PHOTO_SUFFIXES)
    path = Path(text).expanduser()
    for candidate in (path, data_root().parent / path):  # as given, or relative to the repository root
        if candidate.is_file():
            return candidate
    hint = did_you_mean(text, names + [str(photos_dir() / f"{n}.jpg") for n in names])
    raise FileNotFoundError(
        f"{argument}={text!r}: no such file (looked for {path.resolve()}).{hint} Expected the path of an image file "
        f"or the short name of a course photo: {', '.join(repr(n) for n in names) or '(none found)'}. "
        f"Check the spelling, or put your photo in {photos_dir()} and pass its name."
    )


def load_photo(name_or_path: str | Path, size: int | None = None, argument: str = "image") -> Image.Image:
    """Open a course photo (by short name) or any image file as RGB; with `size`, centre-crop and resize it to a
    size x size square."""
    from course_utils.images import load_image

    image = load_image(photo_path(name_or_path, argument))
    if size is not None:
        require_multiple_of_8(size, size)
        image = ImageOps.fit(image, (size, size), Image.LANCZOS)
    return image


# ----------------------------------------------------------------------------------------------------- input checks
def check_prompt(prompt: Any, argument: str = "prompt") -> str | list[str]:
    """A prompt is a string or a non-empty list of strings (one image per string); anything else is explained."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, (list, tuple)):
        if len(prompt) == 0:
            raise ValueError(
                f"{argument}=[] is an empty list: expected a string, or a list with one string per image you want. "
                f"Pass e.g. {argument}='a photo of a cat' or {argument}=['a cat', 'a dog']."
            )
        wrong = [i for i, p in enumerate(prompt) if not isinstance(p, str)]
        if wrong:
            raise TypeError(
                f"{argument}[{wrong[0]}] is {type(prompt[wrong[0]]).__name__}, not a string: every item of "
                f"{argument} must be a text prompt. Convert it with str() or remove it."
            )
        return list(prompt)
    raise TypeError(
        f"{argument} is a {type(prompt).__name__}: expected a string or a list of strings. "
        f"Pass e.g. {argument}='a photo of a cat'."
    )


def steps_that_run(num_inference_steps: int, strength: float) -> int:
    """Denoising steps image-to-image runs, as diffusers counts them: int(num_inference_steps * strength)."""
    return min(int(num_inference_steps * strength), num_inference_steps)


def _smallest_strength(num_inference_steps: int) -> float:
    """The smallest strength, in hundredths, that leaves at least one step to run."""
    hundredths = math.ceil(100 / num_inference_steps)
    while steps_that_run(num_inference_steps, hundredths / 100) < 1:
        hundredths += 1
    return min(hundredths, 100) / 100


def _fewest_steps(strength: float) -> int:
    """The fewest num_inference_steps that leave at least one step to run at this strength."""
    steps = max(1, math.ceil(1 / strength))
    while steps_that_run(steps, strength) < 1:
        steps += 1
    return steps


def check_strength(strength: Any, num_inference_steps: int | None = None) -> float:
    """`strength` must be in (0, 1]; with `num_inference_steps`, it must also leave at least one step to run."""
    if isinstance(strength, bool) or not isinstance(strength, (int, float)):
        raise TypeError(f"strength={strength!r}: expected a number in (0, 1], e.g. strength=0.6.")
    if not 0 < strength <= 1:
        raise ValueError(
            f"strength={strength}: expected a number in (0, 1]. It is the fraction of the noise schedule that is "
            "added to your image and then removed: near 0 keeps the image, 1 replaces it completely. "
            "Try strength=0.6."
        )
    if num_inference_steps is not None:
        require_positive_int("num_inference_steps", num_inference_steps)
        if steps_that_run(num_inference_steps, strength) < 1:
            product = num_inference_steps * strength
            raise ValueError(
                f"strength={strength} with num_inference_steps={num_inference_steps} leaves "
                f"int({num_inference_steps} x {strength}) = int({product:g}) = 0 denoising steps: "
                "num_inference_steps x strength must be at least 1. Unchecked, image-to-image "
                "fails with 'RuntimeError: cannot reshape tensor of 0 elements' (DDIM, Euler and "
                "most schedulers) or, with PNDM, runs one step at the lowest noise level and "
                "returns the image almost unchanged. Raise strength to at least "
                f"{_smallest_strength(num_inference_steps)}, or num_inference_steps to at least "
                f"{_fewest_steps(strength)}."
            )
    return float(strength)


def check_guidance(guidance_scale: Any) -> float:
    """Classifier-free guidance scale: a finite number >= 0 (at most 1 means no guidance in
    diffusers)."""
    expected = ("expected a finite number >= 0, e.g. guidance_scale=7.5 "
                "(1 or less switches guidance off)")
    if isinstance(guidance_scale, str):
        raise TypeError(f"guidance_scale={guidance_scale!r} is text: {expected}, without quotes.")
    if isinstance(guidance_scale, bool) or not isinstance(guidance_scale, (int, float)):
        raise TypeError(f"guidance_scale={guidance_scale!r}: {expected}.")
    if not math.isfinite(guidance_scale) or guidance_scale < 0:
        raise ValueError(f"guidance_scale={guidance_scale!r}: {expected}. NaN would silently "
                         "switch guidance off, and infinity turns every pixel black.")
    return float(guidance_scale)


def check_size(height: int, width: int) -> tuple[int, int]:
    """Height and width must be positive multiples of 8 (the VAE's downsampling factor)."""
    return require_multiple_of_8(height, width)


def match_mask(mask: Image.Image, image: Image.Image, resize: bool = True) -> Image.Image:
    """Return `mask` as a black/white 'L' image of the same size as `image`; resize it (with a note) or raise."""
    if not isinstance(mask, Image.Image):
        raise TypeError(f"mask_image is a {type(mask).__name__}: expected a PIL image (white = repaint, black = keep).")
    mask = mask.convert("L")
    if mask.size != image.size:
        if not resize:
            raise ValueError(
                f"mask_image is {mask.width}x{mask.height} px but image is {image.width}x{image.height} px: "
                "expected the same size, so that every mask pixel says whether the pixel under it is repainted. "
                "Resize the mask with mask.resize(image.size, Image.NEAREST), or draw it at the image's size."
            )
        print(
            f"note: mask_image was {mask.width}x{mask.height} px, image is {image.width}x{image.height} px; "
            "resized the mask to the image's size (nearest neighbour, so it stays black and white)."
        )
        mask = mask.resize(image.size, Image.NEAREST)
    return mask


def check_inputs(
    prompt: Any,
    *,
    image: Image.Image | str | Path | None = None,
    mask_image: Image.Image | None = None,
    strength: float | None = None,
    num_inference_steps: int | None = None,
    height: int | None = None,
    width: int | None = None,
    guidance_scale: float | None = None,
) -> dict[str, Any]:
    """Check the arguments of a pipeline call; return them as keyword arguments (images loaded, mask matched)."""
    kwargs: dict[str, Any] = {"prompt": check_prompt(prompt)}
    if guidance_scale is not None:
        kwargs["guidance_scale"] = check_guidance(guidance_scale)
    if image is not None:
        kwargs["image"] = image if isinstance(image, Image.Image) else load_photo(image)
    if mask_image is not None:
        if image is None:
            raise ValueError("mask_image was given without image: inpainting needs the image the mask belongs to.")
        kwargs["mask_image"] = match_mask(mask_image, kwargs["image"])
    if num_inference_steps is not None:
        kwargs["num_inference_steps"] = require_positive_int("num_inference_steps", num_inference_steps)
    if strength is not None:
        kwargs["strength"] = check_strength(strength, num_inference_steps)
    if (height is None) != (width is None):
        raise ValueError(f"height={height}, width={width}: give both or neither (neither: the model's default size).")
    if height is not None:
        kwargs["height"], kwargs["width"] = check_size(height, width)
    elif image is not None:
        check_size(kwargs["image"].height, kwargs["image"].width)
    return kwargs


# ------------------------------------------------------------------------------------------- weights and sharing
def module_components(pipe) -> dict[str, Any]:
    """The pipeline's torch modules (unet, vae, text_encoder, ...), by name."""
    import torch

    return {name: c for name, c in pipe.components.items() if isinstance(c, torch.nn.Module)}


def component_bytes(pipe) -> dict[str, int]:
    """Bytes of parameters and buffers of each torch component, in its current dtype."""
    return {
        name: sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))
        for name, module in module_components(pipe).items()
    }


def unique_weight_bytes(*pipes) -> int:
    """Bytes of distinct weight storage across pipelines: tensors shared between them count once."""
    seen: dict[int, int] = {}
    for pipe in pipes:
        for module in module_components(pipe).values():
            for t in (*module.parameters(), *module.buffers()):
                seen[t.data_ptr()] = t.numel() * t.element_size()
    return sum(seen.values())


def shared_components(a, b) -> dict[str, bool]:
    """For each component name the two pipelines both have: True when it is the very same object."""
    ca, cb = a.components, b.components
    return {name: ca[name] is cb[name] for name in ca if name in cb and ca[name] is not None}


# -------------------------------------------------------------------------------------------------- memory plan
def attention_backend(pipe) -> str:
    """Names of the UNet's attention processors, e.g. 'AttnProcessor2_0 (PyTorch SDPA)'."""
    names = sorted({type(p).__name__ for p in pipe.unet.attn_processors.values()})
    labels = {"AttnProcessor2_0": "PyTorch SDPA", "AttnProcessor": "plain matmul, no SDPA"}
    return ", ".join(f"{n} ({labels[n]})" if n in labels else n for n in names)


def activation_bytes(height: int, width: int, element_size: int = 2, vae_tiling: bool = False) -> int:
    """Rule-of-thumb activation memory of one SD generation at height x width (UNet loop + VAE decode)."""
    scale = element_size / 2
    pixels = height * width / 512**2
    vae = VAE_ACTIVATION_BYTES_512 * (min(pixels, 1.0) if vae_tiling else pixels)
    return int((UNET_ACTIVATION_BYTES_512 * pixels + vae) * scale)


@dataclass
class MemoryPlan:
    """What fit_to_gpu chose, and why: device, offload mode, VAE tiling, and the figures behind the choice."""

    device: str
    offload: str  # "none", "model" or "sequential"
    vae_tiling: bool
    free_bytes: int | None
    weights_bytes: int
    needed_bytes: int
    attention: str = ""
    reasons: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        gib = lambda b: "n/a" if b is None else f"{b / GIB:.2f} GiB"  # noqa: E731
        lines = [
            f"  device         : {self.device}",
            f"  free memory    : {gib(self.free_bytes)}",
            f"  weights        : {gib(self.weights_bytes)}",
            f"  estimated need : {gib(self.needed_bytes)} (weights + activations, rule of thumb)",
            f"  CPU offload    : {self.offload}",
            f"  VAE tiling     : {'on' if self.vae_tiling else 'off'}",
            f"  attention      : {self.attention or 'unknown'}",
        ]
        return "\n".join(["fit_to_gpu chose:", *lines, *("  - " + r for r in self.reasons)])


def sd15_component_bytes(element_size: int = 2) -> dict[str, int]:
    """Weight bytes of the real SD 1.5 unet, vae and text encoder, counted on the meta device (no memory used)."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from course_utils.models import architectures as arch

    with torch.device("meta"):
        models = {
            "unet": UNet2DConditionModel(**arch.SD_UNET["full"]),
            "vae": AutoencoderKL(**arch.SD_VAE["full"]),
            "text_encoder": CLIPTextModel(CLIPTextConfig(**arch.CLIP_TEXT_COMMON, **arch.SD_TEXT_ENCODER["full"])),
        }
    return {name: sum(p.numel() for p in m.parameters()) * element_size for name, m in models.items()}


def plan_memory(
    device: str,
    free_bytes: int | None,
    sizes: dict[str, int],
    height: int = 512,
    width: int = 512,
    element_size: int = 2,
) -> MemoryPlan:
    """Choose offload and VAE tiling from the free memory and the component sizes (pure: no GPU needed)."""
    weights = sum(sizes.values())
    if device != "cuda" or free_bytes is None:
        reasons = [
            f"on {device} there is nothing to do: the weights live in ordinary RAM, CPU offload needs a CUDA GPU, "
            "and attention already uses PyTorch's scaled_dot_product_attention (SDPA)."
        ]
        needed = weights + activation_bytes(height, width, element_size)
        return MemoryPlan(device, "none", False, free_bytes, weights, needed, reasons=reasons)
    reasons = []
    # The VAE decoder's activations dominate at large sizes: tile when they would take over a quarter of free memory.
    # (Tiling changes nothing for images no larger than one tile, 512 px for SD 1.x.)
    full_decode = activation_bytes(height, width, element_size) - activation_bytes(height, width, element_size, True)
    tiling = full_decode > 0 and activation_bytes(height, width, element_size) > free_bytes / 4
    activations = activation_bytes(height, width, element_size, vae_tiling=tiling)
    needed = weights + activations
    largest = max(sizes.values(), default=0)
    if free_bytes >= needed * HEADROOM:
        offload = "none"
        reasons.append("everything fits on the GPU: pipe.to('cuda'), the fastest option.")
    elif free_bytes >= (largest + activations) * HEADROOM:
        offload = "model"
        reasons.append(
            "the whole pipeline does not fit, its largest model does: enable_model_cpu_offload() keeps one model "
            "on the GPU at a time (a little slower; do not call .to('cuda') afterwards)."
        )
    else:
        offload = "sequential"
        reasons.append(
            "even the largest model does not fit: enable_sequential_cpu_offload() streams weights layer by layer "
            "(works on very small GPUs, but several times slower)."
        )
    if offload != "none" and not tiling and full_decode > 0:
        tiling = True  # memory is tight anyway: tiling costs little time and caps the decode's peak
        activations = activation_bytes(height, width, element_size, vae_tiling=True)
        needed = weights + activations
    if tiling:
        reasons.append("pipe.vae.enable_tiling(): decode the latents tile by tile to cap the VAE's peak memory.")
    return MemoryPlan("cuda", offload, tiling, free_bytes, weights, needed, reasons=reasons)


def apply_plan(pipe, plan: MemoryPlan):
    """Apply a MemoryPlan to `pipe` (move it, or enable offload) and return the pipeline."""
    if plan.offload == "model":
        pipe.enable_model_cpu_offload()
    elif plan.offload == "sequential":
        pipe.enable_sequential_cpu_offload()
    else:
        pipe.to(plan.device)
    if plan.vae_tiling:
        pipe.vae.enable_tiling()  # on the VAE itself: the pipeline-level tiling method was deprecated
    plan.attention = attention_backend(pipe)
    return pipe


def free_gpu_bytes(device: str) -> int | None:
    """Free memory on the current CUDA device, or None for other devices."""
    import torch

    return torch.cuda.mem_get_info()[0] if device == "cuda" else None


def fit_to_gpu(pipe, course, height: int = 512, width: int = 512, free_bytes: int | None = None) -> MemoryPlan:
    """Pick and apply the memory options for `pipe` on course.device from the free GPU memory; print what it chose."""
    import torch

    device = course.device
    free = free_gpu_bytes(device) if free_bytes is None else free_bytes
    element_size = torch.tensor([], dtype=course.dtype).element_size()
    plan = plan_memory(device, free, component_bytes(pipe), height, width, element_size)
    apply_plan(pipe, plan)
    print(plan)
    return plan


def reset_memory_options(pipe, dtype=None):
    """Undo offload hooks and VAE tiling and bring the pipeline back to CPU memory (in `dtype` if given), so that
    every memory option is measured from the same starting point."""
    pipe.remove_all_hooks()
    pipe.vae.disable_tiling()
    pipe.to("cpu")
    return cast_pipeline(pipe, dtype) if dtype is not None else pipe


def cast_pipeline(pipe, dtype):
    """Cast every model of `pipe` to `dtype` in place (silencing diffusers' advice to reload, which is for keeping
    some layers in float32: the SD 1.x models have none)."""
    from diffusers.utils import logging

    if pipe.dtype == dtype:
        return pipe
    previous = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        return pipe.to(dtype=dtype)
    finally:
        logging.set_verbosity(previous)


# ------------------------------------------------------------------------------------------------------ measuring
@dataclass(frozen=True)
class Measurement:
    """Wall-clock seconds of one run and, on CUDA, its peak allocated memory (torch.cuda.max_memory_allocated)."""

    seconds: float
    peak_bytes: int | None
    result: Any = None

    @property
    def peak_gib(self) -> str:
        """Peak memory as text, or an explanation when it cannot be measured."""
        return "n/a (CPU)" if self.peak_bytes is None else f"{self.peak_bytes / GIB:.2f} GiB"


def measure(run: Callable[[], Any], device: str) -> Measurement:
    """Time `run()` and, on CUDA, record the peak GPU memory it allocated (synchronising before and after)."""
    import torch

    gc.collect()
    cuda = device == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    result = run()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return Measurement(seconds, torch.cuda.max_memory_allocated() if cuda else None, result)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (renders as a table in Jupyter through IPython.display.Markdown)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
