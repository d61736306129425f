"""Lesson 08's LoRA trainer, which scripts/train_lora.py runs: the concept's pictures encoded once, a LoRA adapter
on the frozen UNet, AdamW, a checkpoint every checkpointing_steps and on Ctrl-C, and an exact resume. It is built on
the runtime every trainer of the course shares (training/runtime.py). The LoRA itself (LoraConfig, add_adapter, the
loss, save/load/fuse) is written out in lesson 08's cells."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from course_utils.folders import load_image_tensors
from course_utils.lora import LORA_FILE, check_lora_config
from course_utils.training import runs, runtime

CHECKPOINTS_KEPT = 2


@dataclass
class LoraTrainingConfig:
    """What scripts/train_lora.py trains: the data, the LoRA, the optimizer and where to save."""

    pretrained: str
    data_dir: str
    output_dir: str
    resolution: int = 512
    rank: int = 4
    alpha: float = 4.0
    target_modules: tuple = ("to_q", "to_k", "to_v", "to_out.0")
    max_train_steps: int = 500
    train_batch_size: int = 4
    learning_rate: float = 1e-3
    lr_warmup_steps: int = 20
    caption_dropout: float = 0.1
    snr_gamma: float | None = 5.0
    max_grad_norm: float = 1.0
    mixed_precision: str = "auto"  # "auto": bf16 where supported, fp16 on other GPUs, fp32 on a CPU
    gradient_checkpointing: bool = False
    checkpointing_steps: int = 100
    seed: int = 0
    default_caption: str | None = None
    prior_dir: str | None = None  # prior preservation: pictures of what the model should keep drawing
    prior_batch_size: int = 4  # prior images added to each batch (with prior_dir)
    save_fp16: bool = False  # store the LoRA in fp16: half the file, the same pictures

    def save(self, path: Path) -> None:
        """Write the config as JSON (a resumed run checks it)."""
        path.write_text(json.dumps(asdict(self), indent=2, default=list))


@dataclass
class LoraResult(runtime.RunResult):
    """What train_lora did (see runtime.RunResult), and where the LoRA is."""

    lora_path: Path | None  # the saved LoRA file (None if the run was stopped before the end)


def _load_parts(config: LoraTrainingConfig, dtype: torch.dtype) -> dict:
    """The pipeline's frozen parts in `dtype`, and a DDPMScheduler with its noise schedule."""
    from diffusers import DDPMScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(
        config.pretrained, dtype=dtype, safety_checker=None, requires_safety_checker=False
    )
    for part in (pipe.vae, pipe.text_encoder, pipe.unet):
        part.requires_grad_(False)  # frozen: no gradients, and the backward pass stops at the LoRA
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    return dict(
        vae=pipe.vae,
        text_encoder=pipe.text_encoder,
        tokenizer=pipe.tokenizer,
        unet=pipe.unet,
        noise_scheduler=noise_scheduler,
    )


def _encode_folder(folder: str, config: LoraTrainingConfig, parts: dict, device, caption=None) -> dict:
    """A folder's latent distributions (encoded once: the VAE is frozen) and caption token ids."""
    from course_utils.text_to_image import encode_all, tokenize

    images, captions = load_image_tensors(folder, config.resolution, caption)
    vae = parts["vae"]
    means, stds = encode_all(vae, images.to(device, vae.dtype), batch_size=8)
    return dict(
        means=means.float().cpu(),
        stds=stds.float().cpu(),
        count=len(images),
        input_ids=tokenize(parts["tokenizer"], captions),
    )


@torch.no_grad()
def _prepare_data(config: LoraTrainingConfig, parts: dict, device: torch.device) -> dict:
    """Encode the concept's (and the prior's) pictures and tokenize their captions."""
    from course_utils.text_to_image import tokenize

    parts["vae"].to(device)
    data = dict(
        concept=_encode_folder(config.data_dir, config, parts, device, config.default_caption),
        scaling_factor=parts["vae"].config.scaling_factor,
        empty_ids=tokenize(parts["tokenizer"], [""]),
    )
    if config.prior_dir:
        data["prior"] = _encode_folder(config.prior_dir, config, parts, device)
    parts["vae"].to("cpu")  # not needed any more: its memory goes to training
    return data


def _draw(part: dict, count: int, generator: torch.Generator) -> tuple:
    """`count` pictures of one folder: latents sampled from their distributions, and caption ids."""
    idx = torch.randint(0, part["count"], (count,), generator=generator)
    mean, std = part["means"][idx], part["stds"][idx]
    return mean + std * torch.randn(mean.shape, generator=generator), part["input_ids"][idx]


def _batch(config: LoraTrainingConfig, data: dict, generator: torch.Generator) -> tuple:
    """One step's scaled latents and caption ids (some dropped): the concept's, then the prior's."""
    from course_utils.text_to_image import drop_captions

    latents, ids = _draw(data["concept"], config.train_batch_size, generator)
    if "prior" in data:
        prior_latents, prior_ids = _draw(data["prior"], config.prior_batch_size, generator)
        latents, ids = torch.cat([latents, prior_latents]), torch.cat([ids, prior_ids])
    ids = drop_captions(ids, data["empty_ids"], config.caption_dropout, generator)
    return latents * data["scaling_factor"], ids


def add_lora(unet, config: LoraTrainingConfig) -> None:
    """Freeze the UNet, add a LoRA adapter (Gaussian-initialised A, zero B), its weights in fp32."""
    from diffusers.training_utils import cast_training_params
    from peft import LoraConfig

    lora_config = LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        init_lora_weights="gaussian",
        target_modules=list(config.target_modules),
    )
    check_lora_config(unet, lora_config)
    unet.requires_grad_(False)
    unet.add_adapter(lora_config)
    cast_training_params(unet, dtype=torch.float32)  # the optimizer updates fp32 weights


def lora_state_dict(unet) -> dict:
    """The UNet's LoRA weights under diffusers' names, for save_lora_weights(unet_lora_layers=)."""
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    return convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))


def _accelerator(config: LoraTrainingConfig):
    """An Accelerator with the precision this device supports (the runtime's rule), and the dtype of the frozen
    weights: that precision's on a GPU, fp32 elsewhere."""
    accelerator, why = runtime.make_accelerator(config.mixed_precision)
    on_gpu = accelerator.device.type == "cuda"
    dtype = runtime.weight_dtype(accelerator.mixed_precision) if on_gpu else torch.float32
    return accelerator, dtype, why


def _checkpoint_state(unet, optimizer, lr_scheduler, accelerator, state: dict) -> dict:
    """What an exact resume needs: the LoRA weights, the optimizer, the schedule, the counters."""
    from peft.utils import get_peft_model_state_dict

    saved = dict(
        state,
        lora=get_peft_model_state_dict(unet),
        optimizer=optimizer.state_dict(),
        lr_scheduler=lr_scheduler.state_dict(),
    )
    if accelerator.scaler is not None:
        saved["scaler"] = accelerator.scaler.state_dict()
    return saved


def _save_checkpoint(output_dir: Path, saved: dict) -> Path:
    """checkpoints/checkpoint-<step>/state.pt, written atomically by the runtime; the newest CHECKPOINTS_KEPT stay."""
    write = lambda folder: runtime.write_state_file(folder, saved)  # noqa: E731
    return runtime.save_checkpoint(output_dir, saved["step"], write, keep=CHECKPOINTS_KEPT)


def _resume(output_dir: Path, resume: str | Path, unet, optimizer, lr_scheduler, accelerator) -> dict:
    """Load a checkpoint ('latest' or a folder) into the run; return its counters."""
    from peft import set_peft_model_state_dict

    saved = runtime.read_state_file(runtime.resume_checkpoint(output_dir, resume))
    set_peft_model_state_dict(unet, saved["lora"])
    optimizer.load_state_dict(saved["optimizer"])
    lr_scheduler.load_state_dict(saved["lr_scheduler"])
    if "scaler" in saved and accelerator.scaler is not None:
        accelerator.scaler.load_state_dict(saved["scaler"])
    return {k: saved[k] for k in ("step", "history", "seconds")}


def _setup_run(config: LoraTrainingConfig, accelerator, dtype: torch.dtype) -> dict:
    """Load the frozen parts, encode the data, add the LoRA, build the optimizer and schedule."""
    from diffusers.optimization import get_constant_schedule_with_warmup

    if config.rank < 1:
        raise ValueError(f"rank={config.rank}: the LoRA rank must be at least 1 (4-16 is usual).")
    parts = _load_parts(config, dtype)
    data = _prepare_data(config, parts, accelerator.device)
    unet = parts["unet"]
    torch.manual_seed(config.seed)  # the random start of the A matrices
    add_lora(unet, config)
    unet.train()
    if config.gradient_checkpointing:
        # recompute activations in the backward pass: less memory, about a third more arithmetic
        unet.enable_gradient_checkpointing()
    params = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.0)
    lr_scheduler = get_constant_schedule_with_warmup(optimizer, config.lr_warmup_steps)
    unet, optimizer = accelerator.prepare(unet, optimizer)
    parts["text_encoder"].to(accelerator.device)
    return dict(parts, data=data, unet=unet, params=params, optimizer=optimizer, lr_scheduler=lr_scheduler)


# Copied in notebooks/08_lora_finetuning.ipynb, the loop of its training section;
# kept equal by tests/test_lesson08.py::test_the_notebook_loop_trains_the_same_lora_as_the_trainer
def _train_step(config: LoraTrainingConfig, run: dict, accelerator, step: int) -> torch.Tensor:
    """One optimizer step on a batch drawn from a generator seeded by (seed, step, process)."""
    from course_utils.text_to_image import text_to_image_loss

    generator = runtime.step_generator(config.seed, step, accelerator.process_index)
    latents, ids = _batch(config, run["data"], generator)
    with accelerator.autocast():
        loss = text_to_image_loss(
            run["unet"],
            run["text_encoder"],
            run["noise_scheduler"],
            latents.to(accelerator.device),
            ids.to(accelerator.device),
            generator,
            snr_gamma=config.snr_gamma,
        )
    accelerator.backward(loss)
    accelerator.clip_grad_norm_(run["params"], config.max_grad_norm)
    run["optimizer"].step()
    run["lr_scheduler"].step()
    run["optimizer"].zero_grad(set_to_none=True)
    return loss.detach()


def _loop(config: LoraTrainingConfig, run: dict, accelerator, state: dict, last: int, bar) -> None:
    """Steps until `last` (or Ctrl-C), a checkpoint every checkpointing_steps and at the stop."""
    unet = accelerator.unwrap_model(run["unet"])
    with runtime.StopRequest(accelerator.print) as stop:
        while state["step"] < last:
            started = time.perf_counter()
            loss = _train_step(config, run, accelerator, state["step"])
            state["step"] += 1
            state["seconds"] += time.perf_counter() - started
            state["history"].append({"step": state["step"], "loss": loss.item()})
            bar.update(1)
            stopped = stop.requested(accelerator) or state["step"] == last
            due = state["step"] % config.checkpointing_steps == 0 or stopped
            if accelerator.is_main_process and due:
                saved = _checkpoint_state(unet, run["optimizer"], run["lr_scheduler"], accelerator, state)
                _save_checkpoint(Path(config.output_dir), saved)
            if stop.flag:
                break


def _save_lora(config: LoraTrainingConfig, unet) -> Path:
    """save_lora_weights into output_dir (in fp16 with save_fp16); return the file."""
    from diffusers import StableDiffusionPipeline

    layers = lora_state_dict(unet)
    if config.save_fp16:
        layers = {k: v.to(torch.float16) for k, v in layers.items()}
    StableDiffusionPipeline.save_lora_weights(config.output_dir, unet_lora_layers=layers)
    return Path(config.output_dir) / LORA_FILE


def train_lora(
    config: LoraTrainingConfig,
    resume: str | Path | None = None,
    stop_at_step: int | None = None,
    progress: bool = True,
) -> LoraResult:
    """Train a LoRA on config.data_dir's images; its checkpoints resume exactly."""
    from tqdm.auto import tqdm

    accelerator, dtype, why = _accelerator(config)
    accelerator.print(f"precision: {why}")
    output_dir = runs.require_writable_folder(config.output_dir)
    run = _setup_run(config, accelerator, dtype)
    unet = accelerator.unwrap_model(run["unet"])
    state = dict(step=0, history=[], seconds=0.0)
    if resume is not None:
        optimizer, lr_scheduler = run["optimizer"], run["lr_scheduler"]
        state = _resume(output_dir, resume, unet, optimizer, lr_scheduler, accelerator)
        accelerator.print(f"resumed at step {state['step']}")
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        config.save(output_dir / "lora_config.json")
    last = min(config.max_train_steps, stop_at_step or config.max_train_steps)
    shown = progress and accelerator.is_local_main_process
    bar = tqdm(total=config.max_train_steps, initial=state["step"], desc="LoRA", disable=not shown)
    _loop(config, run, accelerator, state, last, bar)
    bar.close()
    lora_path = None
    if accelerator.is_main_process and state["step"] >= config.max_train_steps:
        lora_path = _save_lora(config, unet)
    accelerator.wait_for_everyone()
    steps = config.max_train_steps
    return LoraResult(
        output_dir, state["step"], steps, state["history"], state["seconds"], accelerator.mixed_precision, lora_path
    )
