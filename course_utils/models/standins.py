"""Stand-in models: random weights in the real architecture, saved in the hub repo's folder layout, so that the
lesson's own `from_pretrained(folder)` code runs unchanged when the hub cannot be reached."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from course_utils.models import architectures as arch
from course_utils.models.registry import ModelSpec
from course_utils.paths import ASSETS

STANDIN_VERSION = 2
TOKENIZER_FILES = ASSETS / "clip_tokenizer"
SIZES = ("tiny", "full")


def clip_tokenizer():
    """The real CLIP BPE tokenizer (49,408 tokens, 77-token context), built from files shipped in the package."""
    from transformers import CLIPTokenizer

    return CLIPTokenizer(
        str(TOKENIZER_FILES / "vocab.json"),
        str(TOKENIZER_FILES / "merges.txt"),
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        model_max_length=77,
    )


# The words a small T5-style tokenizer keeps whole; it spells every other word one character at a time.
T5_WORDS = """
a photo of a cat sitting on a red chair next to the window in the morning light
a painting of a squirrel eating a burger in the park with green trees and blue sky
an oil painting of a small house by the sea at sunset with boats and birds
a drawing of a dog playing with a ball on the grass in a sunny garden
a close up photo of a yellow flower with water drops on its petals
a watercolor picture of a mountain lake with snow and a wooden boat
a cartoon robot holding a sign that says hello world in big letters
a cute emoji face with a smile and round eyes on a white background
a bowl of fruit on a kitchen table, apples, oranges and a banana
an astronaut riding a horse on the moon, digital art, high quality
a city street at night with rain, lights, cars and people walking
a portrait of an old man with a beard and a hat, black and white photo
a forest path in autumn with orange leaves and soft fog
a cup of coffee and a book on a desk near a lamp
a fish swimming in clear water over colorful stones
a blurry photo, bad quality, ugly, low resolution, noise, text, watermark
"""


def _t5_vocab() -> list[tuple[str, float]]:
    """Unigram pieces with log-probability scores: T5's special tokens first, then whole words (scored by how often
    they occur), then single characters, which cost far more than a known word, so known words stay whole."""
    import math
    import string

    words = T5_WORDS.replace(",", " ").split()
    counts = {word: words.count(word) for word in dict.fromkeys(words)}  # first-seen order: deterministic
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [("\u2581" + word, math.log(count / len(words))) for word, count in counts.items()]
    rare = math.log(1e-6)
    return vocab + [("\u2581", rare)] + [(c, rare) for c in string.ascii_letters + string.digits + string.punctuation]


def t5_tokenizer(model_max_length: int = 512):
    """A small T5-style tokenizer built offline (<pad>=0, </s>=1, <unk>=2; "▁" marks a word start, as in
    SentencePiece). The real T5 vocabulary has 32,128 pieces; the course's models only need the shape of T5's input."""
    from transformers import T5TokenizerFast

    return T5TokenizerFast(vocab=_t5_vocab(), extra_ids=0, model_max_length=model_max_length)


def _build_ddpm(folder: Path, size: str) -> None:
    """google/ddpm-cat-256 layout: UNet and scheduler files at the repo root, plus model_index.json."""
    import diffusers
    from diffusers import DDPMScheduler, UNet2DModel

    UNet2DModel(**arch.DDPM_UNET[size]).save_pretrained(folder)
    DDPMScheduler(**arch.DDPM_SCHEDULER).save_pretrained(folder)
    index = {
        "_class_name": "DDPMPipeline",
        "_diffusers_version": diffusers.__version__,
        "scheduler": ["diffusers", "DDPMScheduler"],
        "unet": ["diffusers", "UNet2DModel"],
    }
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))


def _build_sd(folder: Path, size: str, spec: ModelSpec) -> None:
    """Stable Diffusion v1 layout: model_index.json with unet/, vae/, text_encoder/, tokenizer/, scheduler/."""
    import diffusers
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    unet_config = dict(arch.SD_UNET[size])
    if spec.kind == "sd-inpaint":
        unet_config["in_channels"] = 9  # noisy latents (4) + mask (1) + masked-image latents (4)
    scheduler = getattr(diffusers, spec.scheduler).from_config(arch.SD_SCHEDULER_CONFIG)
    text_config = CLIPTextConfig(**arch.CLIP_TEXT_COMMON, **arch.SD_TEXT_ENCODER[size])
    pipe = StableDiffusionPipeline(
        vae=AutoencoderKL(**arch.SD_VAE[size]),
        text_encoder=CLIPTextModel(text_config),
        tokenizer=clip_tokenizer(),
        unet=UNet2DConditionModel(**unet_config),
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder)
    for name in ("vocab.json", "merges.txt"):  # the real repos ship these too; older loaders read them
        shutil.copy(TOKENIZER_FILES / name, folder / "tokenizer" / name)
    _write_real_scheduler_config(folder / "scheduler" / "scheduler_config.json", spec.scheduler)
    if spec.kind == "sd-inpaint":  # the real inpainting repo names its own pipeline class
        index = json.loads((folder / "model_index.json").read_text())
        index["_class_name"] = "StableDiffusionInpaintPipeline"
        (folder / "model_index.json").write_text(json.dumps(index, indent=2))


def _write_real_scheduler_config(path: Path, class_name: str) -> None:
    """Overwrite save_pretrained's config (every default spelled out) with only the keys the real repos ship."""
    import diffusers

    config = {"_class_name": class_name, "_diffusers_version": diffusers.__version__, **arch.SD_SCHEDULER_CONFIG}
    path.write_text(json.dumps(config, indent=2))


def _write_readme(folder: Path, spec: ModelSpec, size: str) -> None:
    (folder / "STANDIN.md").write_text(
        f"# Stand-in for {spec.repo_id}\n\n"
        f"Built by course_utils because the hub was not used (smoke mode, or no network). Architecture: {size} "
        f"version of {spec.about}. The weights are RANDOM (seed 0): images from it are noise-like patterns, "
        "but every shape, config and file layout matches the real repo, so the lesson code runs unchanged.\n"
    )


def share_like_other_files(folder: Path) -> None:
    """Give `folder` and everything in it the permissions a plain mkdir/open would (mkdtemp makes
    0700 and safetensors 0600), so other users of a shared HF_HOME can read the stand-in."""
    umask = os.umask(0)
    os.umask(umask)
    for path in [folder, *folder.rglob("*")]:
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def build_standin(spec: ModelSpec, folder: Path, size: str = "tiny") -> Path:
    """Build the stand-in for `spec` into `folder` (atomically) and return `folder`."""
    if size not in SIZES:
        raise ValueError(f"size={size!r}: expected one of {SIZES}.")
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        with torch.random.fork_rng(devices=[]):  # same weights every time, without touching the caller's RNG
            torch.manual_seed(0)
            if spec.kind == "ddpm":
                _build_ddpm(tmp, size)
            else:
                _build_sd(tmp, size, spec)
        _write_readme(tmp, spec, size)
        share_like_other_files(tmp)
        if folder.exists():  # another process finished first; keep theirs
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def standin_folder(root: Path, spec: ModelSpec, size: str) -> Path:
    """Where the stand-in for `spec` at `size` lives under `root`; the version in the name forces a rebuild."""
    return Path(root) / f"{spec.name}-{size}-v{STANDIN_VERSION}"


def get_standin(root: Path, spec: ModelSpec, size: str = "tiny") -> Path:
    """Return the stand-in folder, building it on first use."""
    folder = standin_folder(root, spec, size)
    return folder if (folder / "STANDIN.md").exists() else build_standin(spec, folder, size)
