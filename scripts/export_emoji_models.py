"""Export the course's trained models into data/models, in the layout of the hub repos they stand in for:
`emoji-sd` (a StableDiffusionPipeline folder from the phases of scripts/train_emoji_models.py), `emoji-sd3` (a
StableDiffusion3Pipeline folder from its sd3 phase) and `emoji-ddpm` (lesson 05's trained DDPM). Weights are stored
in fp16 with configs that load in fp32, the unused token rows zeroed, and the model cards kept.
scripts/train_emoji_models.py calls it:

  python scripts/train_emoji_models.py export         # build/emoji-train -> data/models/emoji-sd
  python scripts/train_emoji_models.py export-ddpm    # build/emoji-ddpm-train -> data/models/emoji-ddpm
  python scripts/train_emoji_models.py export-sd3     # build/emoji-train -> data/models/emoji-sd3
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import torch  # noqa: E402

from course_utils import text_to_image as t2i  # noqa: E402
from course_utils.folders import load_emoji_tensors  # noqa: E402
from course_utils.models.standins import TOKENIZER_FILES, clip_tokenizer, t5_tokenizer  # noqa: E402
from course_utils.training.runs import checkpoints  # noqa: E402
from course_utils.training.runtime import read_state_file  # noqa: E402


def used_token_ids(tokenizer, captions: list[str]) -> torch.Tensor:
    """Every token id that occurs in the padded captions or the empty prompt: the rows training ever touches."""
    return torch.unique(t2i.tokenize(tokenizer, list(captions) + [""]))


def zero_unused_rows(text_encoder, used: torch.Tensor) -> int:
    """Zero the token-embedding rows no caption uses (never trained, so only noise); git then stores them as almost
    nothing. A prompt of unknown words still runs: its words just carry no meaning. Returns the rows zeroed."""
    weight = text_encoder.get_input_embeddings().weight
    keep = torch.zeros(weight.shape[0], dtype=torch.bool)
    keep[used] = True
    with torch.no_grad():
        weight[~keep] = 0
    return int((~keep).sum())


def save_half(module, folder: Path) -> None:
    """save_pretrained in fp16 safetensors (half the bytes), with a config that loads in fp32: the plain
    `from_pretrained(folder)` then gives fp32 for every part (see tidy_config)."""
    from diffusers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()  # casting a whole model with .to() warns even when no module must stay fp32
    try:
        module.to(torch.float16).save_pretrained(folder, safe_serialization=True)
    finally:
        module.to(torch.float32)
        logging.set_verbosity(level)
    tidy_config(Path(folder) / "config.json")


def tidy_config(config_file: Path) -> None:
    """Make a saved config fit to ship.
    - Remove the `_name_or_path` that save_pretrained records (the folder the model was loaded from on the machine
      that trained it): a shipped model must not name a path of that machine.
    - Record fp32 as the dtype to load in. transformers loads a model in the dtype its config names (its default
      is dtype="auto"), while diffusers loads in fp32: with "float16" here, the plain DiffusionPipeline call gives an
      fp16 text encoder next to an fp32 UNet, and the first matmul fails with "Half and Float"."""
    if not config_file.is_file():
        return
    config = json.loads(config_file.read_text())
    changed = config.pop("_name_or_path", None) is not None
    for key in ("dtype", "torch_dtype"):  # torch_dtype: the older key, in configs that older transformers wrote
        if key in config and config[key] != "float32":
            config[key], changed = "float32", True
    if changed:
        config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def ship_clip_tokenizer(folder: Path) -> None:
    """The CLIP tokenizer folder as the SD repos ship it: the course's vocab and merges, and no tokenizer.json (3.6 MB
    that save_pretrained writes and the SD repos do not ship: it is rebuilt from vocab + merges)."""
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(TOKENIZER_FILES / name, folder / name)
    (folder / "tokenizer.json").unlink()


def write_emoji_scheduler(folder: Path) -> None:
    """Give the emoji-sd folder its sampling scheduler: UniPC on SD 1.x's noise schedule, as the diffusers docs swap
    it in with `UniPCMultistepScheduler.from_config(pipe.scheduler.config)`. SD 1.5's repo names PNDM, but on this
    small model PNDM breaks up at the pipeline's default guidance of 7.5 unless it takes about 50 steps: at 25 steps
    the intended emoji is among the 10 nearest for 44% of captions with PNDM and 96% with UniPC
    (bench/emoji_quality.py)."""
    t2i.emoji_scheduler().save_pretrained(folder / "scheduler")
    index_file = folder / "model_index.json"
    index = json.loads(index_file.read_text())
    index["scheduler"] = ["diffusers", "UniPCMultistepScheduler"]
    index_file.write_text(json.dumps(index, indent=2) + "\n")


def export_emoji_sd(work: Path, out: Path) -> None:
    """Assemble the trained VAE, EMA text encoder and EMA UNet as a StableDiffusionPipeline folder at `out`."""
    from diffusers import AutoencoderKL
    from diffusers.training_utils import EMAModel

    vae = AutoencoderKL.from_pretrained(work / ("vae" if (work / "vae").exists() else "vae-stage1"))
    vae.register_to_config(scaling_factor=torch.load(work / "latents.pt")["scaling_factor"])
    text_encoder, unet = t2i.make_text_encoder(), t2i.make_unet()
    state = read_state_file(checkpoints(work / "unet-run")[-1])  # the newest checkpoint of the unet phase
    text_encoder.load_state_dict(state["text_encoder"])
    unet.load_state_dict(state["unet"])
    params = list(text_encoder.parameters()) + list(unet.parameters())
    ema = EMAModel(params)
    ema.load_state_dict(state["extra"])
    ema.copy_to(params)
    _, captions = load_emoji_tensors()  # the captions training saw, in its order
    zeroed = zero_unused_rows(text_encoder, used_token_ids(clip_tokenizer(), captions))
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe = t2i.assemble_pipeline(vae, text_encoder, clip_tokenizer(), unet)
    pipe.save_pretrained(tmp)
    for name, module in (("vae", vae), ("text_encoder", text_encoder), ("unet", unet)):
        shutil.rmtree(tmp / name)
        save_half(module, tmp / name)
    ship_clip_tokenizer(tmp / "tokenizer")
    write_emoji_scheduler(tmp)
    _keep_card(out, tmp)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    print(
        f"emoji-sd: saved to {out} ({zeroed} of {text_encoder.config.vocab_size} token rows unused, zeroed); "
        f"steps {state['step']}, {state['seconds'] / 60:.0f} min of UNet training"
    )


def export_emoji_sd3(work: Path, out: Path, sd_folder: Path) -> None:
    """Assemble emoji-sd3 as a StableDiffusion3Pipeline folder at `out`: the EMA MMDiT of the sd3 phase, emoji-sd's
    VAE with SD3's shift and scaling factors measured by that phase, emoji-sd's text encoder as both CLIP encoders
    (the same file twice, which git stores once), a silent T5 (zeros, as without T5) and the flow-matching Euler
    scheduler."""
    from diffusers import AutoencoderKL, StableDiffusion3Pipeline
    from diffusers.training_utils import EMAModel
    from transformers import CLIPTextModel

    from course_utils import flow_matching as fm

    vae = AutoencoderKL.from_pretrained(sd_folder, subfolder="vae")
    vae.register_to_config(**json.loads((work / "sd3-factors.json").read_text()))
    encoder = fm.with_projection(CLIPTextModel.from_pretrained(sd_folder, subfolder="text_encoder"))
    transformer = fm.make_transformer()
    state = read_state_file(checkpoints(work / "sd3-run")[-1])  # the newest checkpoint of the sd3 phase
    transformer.load_state_dict(state["transformer"])
    ema = EMAModel(list(transformer.parameters()))
    ema.load_state_dict(state["extra"])
    ema.copy_to(transformer.parameters())
    tokenizer_3 = t5_tokenizer()
    parts = dict(
        vae=vae,
        text_encoder=encoder,
        text_encoder_2=encoder,
        text_encoder_3=fm.silent_t5(tokenizer_3, transformer.config.joint_attention_dim),
        transformer=transformer,
    )
    pipe = StableDiffusion3Pipeline(
        **parts,
        tokenizer=clip_tokenizer(),
        tokenizer_2=clip_tokenizer(),
        tokenizer_3=tokenizer_3,
        scheduler=fm.emoji_sd3_scheduler(),
    )
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(tmp)
    for name, module in parts.items():
        shutil.rmtree(tmp / name)
        save_half(module, tmp / name)
    for folder in ("tokenizer", "tokenizer_2"):
        ship_clip_tokenizer(tmp / folder)
    _keep_card(out, tmp)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    print(f"emoji-sd3: saved to {out}; step {state['step']}, {state['seconds'] / 60:.0f} min of training")


def export_emoji_ddpm(run_dir: Path, out: Path) -> None:
    """Copy lesson 05's trained model (EMA weights, ddpm-cat layout) to `out`, the UNet in fp16."""
    from diffusers import DDPMScheduler, UNet2DModel

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    save_half(UNet2DModel.from_pretrained(run_dir), tmp)
    DDPMScheduler.from_pretrained(run_dir).save_pretrained(tmp)
    shutil.copy(run_dir / "model_index.json", tmp / "model_index.json")
    _keep_card(out, tmp)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    print(f"emoji-ddpm: saved to {out}")


def _keep_card(out: Path, tmp: Path) -> None:
    """Carry the model card (README.md, written by hand with the measured figures) over to the new export, and clear
    the way for it (a link left in place of the folder is removed, not followed)."""
    if (out / "README.md").exists():
        shutil.copy(out / "README.md", tmp / "README.md")
    if out.is_symlink():
        out.unlink()
