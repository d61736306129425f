"""Lesson 05's DDPM trainer, built on accelerate: mixed precision chosen per device, gradient accumulation and
clipping, AdamW with cosine warm-up, EMA weights, a progress bar, TensorBoard logs, sample grids, checkpoints every
N steps, exact resume, a checkpoint on Ctrl-C, and the final model saved for `DDPMPipeline.from_pretrained`.

The same `train()` runs in a notebook and under `accelerate launch scripts/train_ddpm.py` on several GPUs.
How resume stays exact: each step draws its noise, timesteps and flips from a generator seeded by (seed, step,
process), never from the global random state; batches come from accelerate's seedable sampler (set_epoch per epoch,
skip_first_batches after a resume); the EMA and the trainer's counters are saved with accelerator.save_state.
What every trainer of the course shares (the precision rule, the accelerator, the step generator, the Ctrl-C
handler, atomic checkpoints) is in runtime.py."""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from course_utils.data import make_dataloader
from course_utils.training import runs, runtime
from course_utils.training.config import TrainingConfig, make_unet
from course_utils.training.runtime import StopRequest, step_generator


# ----------------------------------------------------------------------------------------------- the training step
def random_flips(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2 (data augmentation), drawing from `generator`."""
    flip = torch.rand(images.shape[0], generator=generator, device=generator.device) < 0.5
    return torch.where(flip.to(images.device)[:, None, None, None], images.flip(-1), images)


def diffusion_loss(model, noise_scheduler, clean_images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The DDPM objective: noise the images at random timesteps, ask the model for the noise, return the MSE."""
    batch, device = clean_images.shape[0], clean_images.device
    noise = torch.randn(clean_images.shape, generator=generator, device=generator.device).to(device)
    timesteps = torch.randint(
        0, noise_scheduler.config.num_train_timesteps, (batch,), generator=generator, device=generator.device
    ).to(device)
    noisy_images = noise_scheduler.add_noise(clean_images, noise, timesteps)  # the forward process q(x_t | x_0)
    noise_pred = model(noisy_images, timesteps, return_dict=False)[0]
    return F.mse_loss(noise_pred.float(), noise.float())


# ------------------------------------------------------------------------------------------------- inputs and data
def _images_of(item: Any) -> torch.Tensor:
    """The image tensor of one dataset item: item['images'] (or the item itself if it is a tensor)."""
    if isinstance(item, dict) and "images" in item:
        item = item["images"]
    elif isinstance(item, dict):
        raise TypeError(
            f"Dataset items have keys {sorted(item)} but no 'images'. The trainer needs "
            f"{{'images': tensor in [-1, 1]}}: "
            "apply course_utils.data.with_transform(dataset, size) (or your own set_transform) first."
        )
    if not isinstance(item, torch.Tensor):
        raise TypeError(
            f"Dataset images are {type(item).__name__}, not tensors: convert them with ToTensor() + Normalize([0.5], "
            "[0.5]) "
            "(course_utils.data.with_transform does both)."
        )
    return item


def collate_images(items: list) -> dict:
    """Stack the items' image tensors into a batch; other columns (PIL images, captions) are left out."""
    return {"images": torch.stack([_images_of(item) for item in items])}


def check_training_inputs(config: TrainingConfig, dataset, model, num_processes: int = 1) -> None:
    """Fail before training, with a fix, when the dataset, the model and the config do not fit together."""
    try:
        count = len(dataset)
    except TypeError as err:
        raise TypeError("The trainer needs a dataset with a length (a torch Dataset or datasets.Dataset).") from err
    needed = config.train_batch_size * num_processes
    if count < needed:
        who = f" x {num_processes} processes" if num_processes > 1 else ""
        raise ValueError(
            f"train_batch_size={config.train_batch_size}{who} needs at least {needed} images, but the dataset has "
            f"{count}. Use train_batch_size={max(1, count // num_processes)} or less, or a bigger dataset."
        )
    size = model.config.sample_size
    size = size if isinstance(size, int) else tuple(size)[0]
    if size != config.image_size:
        raise ValueError(
            f"The model was built for {size} px images (sample_size={size}) but config.image_size={config.image_size}. "
            "Build the model from the config (make_unet(config)) or set image_size to match."
        )
    images = _images_of(dataset[0])
    expected = (model.config.in_channels, config.image_size, config.image_size)
    if tuple(images.shape) != expected:
        raise ValueError(
            f"The dataset yields images of shape {tuple(images.shape)}, but the model expects {expected} "
            f"(config.image_size={config.image_size}). Resize them to {config.image_size} px: "
            f"course_utils.data.with_transform(dataset, {config.image_size})."
        )
    low, high = float(images.min()), float(images.max())
    _refuse_unnormalised(dataset)
    if low < -1.001 or high > 1.001:
        raise ValueError(
            f"Dataset images range over [{low:.3g}, {high:.3g}], but DDPM training expects [-1, 1]: "
            "add Normalize([0.5], [0.5]) after ToTensor()."
        )


def _refuse_unnormalised(dataset, count: int = 4) -> None:
    """Refuse ToTensor()'s [0, 1] (Normalize forgotten): no pixel of the first images below 0."""
    lowest = min(float(_images_of(dataset[i]).min()) for i in range(min(count, len(dataset))))
    if lowest >= 0:
        raise ValueError(
            f"No pixel of the first {min(count, len(dataset))} images is below 0: they look like "
            "ToTensor()'s [0, 1], but DDPM training expects [-1, 1]. Add Normalize([0.5], [0.5]) "
            "after ToTensor() (course_utils.data.with_transform does)."
        )


# ----------------------------------------------------------------------------------------------- the run's machinery
@dataclass
class TrainState:
    """The trainer's own counters and loss history, saved in every checkpoint (register_for_checkpointing)."""

    step: int = 0  # optimizer steps done
    micro_step: int = 0  # batches done (more than steps with gradient accumulation); seeds each batch's noise
    epoch: int = 0
    batch_in_epoch: int = 0  # batches of the current epoch already used: skipped after a resume
    history: list = field(default_factory=list)  # one {"step", "loss", "lr", "epoch"} per optimizer step

    def state_dict(self) -> dict:
        return dict(
            step=self.step,
            micro_step=self.micro_step,
            epoch=self.epoch,
            batch_in_epoch=self.batch_in_epoch,
            history=list(self.history),
        )

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)


@dataclass
class TrainResult(runtime.RunResult):
    """What a call to train() did (see runtime.RunResult), and where the model and the newest checkpoint are."""

    model_dir: Path | None  # the saved DDPMPipeline folder (None if the run was stopped before the end)
    checkpoint: Path | None  # the newest checkpoint


def accelerator_for(config: TrainingConfig):
    """The run's Accelerator (runtime.make_accelerator): precision for the device, accumulation, TensorBoard logs in
    <output_dir>/logs, and a data order seeded by config.seed."""
    return runtime.make_accelerator(
        config.mixed_precision,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        output_dir=config.output_dir,
        tensorboard=config.logger == "tensorboard",
        data_seed=config.seed,
    )


@contextmanager
def ema_weights(ema, unet):
    """Put the EMA weights into `unet` (for sampling or saving) and the training weights back afterwards."""
    if ema is None:
        yield unet
        return
    ema.store(unet.parameters())
    ema.copy_to(unet.parameters())
    try:
        yield unet
    finally:
        ema.restore(unet.parameters())


@torch.no_grad()
def sample_images(unet, noise_scheduler, count: int, num_inference_steps: int, seed: int, autocast=None) -> list:
    """Sample `count` images with DDPMPipeline from a CPU generator of their own; the global random state is
    untouched."""
    from contextlib import nullcontext

    from diffusers import DDPMPipeline, DDPMScheduler

    pipeline = DDPMPipeline(unet=unet, scheduler=DDPMScheduler.from_config(noise_scheduler.config))
    pipeline.set_progress_bar_config(disable=True)
    devices = [unet.device.index or 0] if unet.device.type == "cuda" else []
    was_training = unet.training
    unet.eval()
    try:
        with torch.random.fork_rng(devices=devices), autocast or nullcontext():
            generator = torch.Generator("cpu").manual_seed(seed)
            return pipeline(batch_size=count, generator=generator, num_inference_steps=num_inference_steps).images
    finally:
        unet.train(was_training)


def _save_samples(accelerator, unet, ema, noise_scheduler, config: TrainingConfig, step: int) -> None:
    """Sample a grid with the EMA weights, save it as samples/step-<step>.png and log it to TensorBoard."""
    import numpy as np

    from course_utils.images import image_grid

    with ema_weights(ema, unet):
        images = sample_images(
            unet,
            noise_scheduler,
            config.eval_batch_size,
            config.num_inference_steps,
            config.seed,
            accelerator.autocast(),
        )
    grid = image_grid(images, rows=max(1, int(len(images) ** 0.5)))  # about square: 8 images in 2 x 4, 16 in 4 x 4
    folder = Path(config.output_dir) / runs.SAMPLES
    folder.mkdir(parents=True, exist_ok=True)
    grid.save(folder / f"step-{step:06d}.png")
    if any(t.name == "tensorboard" for t in accelerator.trackers):
        accelerator.get_tracker("tensorboard").log_images(
            {"samples": np.asarray(grid)[None]}, step=step, dataformats="NHWC"
        )


def _save_checkpoint(accelerator, config: TrainingConfig, step: int) -> Path:
    """accelerator.save_state into checkpoints/checkpoint-<step>, written atomically by the runtime, keeping the
    newest checkpoints_total_limit."""
    write = lambda folder: accelerator.save_state(str(folder))  # noqa: E731  (collective: every process calls it)
    return runtime.save_checkpoint(config.output_dir, step, write, config.checkpoints_total_limit, accelerator)


def stop_if_not_finite(losses: list[tuple[int, float]], config: TrainingConfig, mixed_precision: str) -> None:
    """Stop the run (nothing more is saved) at the first NaN or infinite loss, naming the likely
    causes."""
    bad = next(((step, value) for step, value in losses if not math.isfinite(value)), None)
    if bad is None:
        return
    causes = [f"learning_rate={config.learning_rate:g} too high (try 10x lower)"]
    if config.max_grad_norm > 10:
        causes.append(f"max_grad_norm={config.max_grad_norm:g} clips too little (try 1.0)")
    if mixed_precision == "fp16":
        causes.append("fp16 overflow (try mixed_precision='bf16' or 'no')")
    causes.append("NaN or infinite values in the images (check the dataset's transform)")
    raise FloatingPointError(
        f"The loss became {bad[1]} at step {bad[0]}: training stopped, and neither this step's "
        f"weights nor a model were saved. Likely causes: {'; '.join(causes)}. Earlier "
        f"checkpoints in {Path(config.output_dir) / runs.CHECKPOINTS} are from before it went "
        "wrong."
    )


def _progress_bar(total: int, initial: int, disable: bool):
    """tqdm: a widget in Jupyter when ipywidgets is installed, text otherwise (never a warning about it)."""
    try:
        import ipywidgets  # noqa: F401
        from tqdm.auto import tqdm
    except ImportError:
        from tqdm.std import tqdm
    return tqdm(total=total, initial=initial, desc="training", unit="step", disable=disable, dynamic_ncols=True)


def _tracker_config(config: TrainingConfig) -> dict:
    """TensorBoard's hparams table takes numbers, strings and booleans only."""
    return {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in config.to_dict().items()}


def _prepare_output_dir(accelerator, config: TrainingConfig, resume) -> Path | None:
    """Check the output folder (see runs.check_output_dir), clear it if asked, save the config."""
    checkpoint = runs.check_output_dir(config, resume)
    accelerator.wait_for_everyone()  # every process checks the folder before the main one writes into it
    if accelerator.is_main_process:
        if checkpoint is None and config.overwrite_output_dir:
            runs.clear_run(config.output_dir)
        Path(config.output_dir).mkdir(parents=True, exist_ok=True)
        config.save(Path(config.output_dir) / runs.CONFIG_FILE)
    accelerator.wait_for_everyone()
    return checkpoint


def _check_hub(config: TrainingConfig) -> None:
    """push_to_hub must be possible before hours of training, not after."""
    if not config.push_to_hub:
        return
    from huggingface_hub import constants, get_token

    if constants.HF_HUB_OFFLINE:
        raise RuntimeError("push_to_hub=True, but the hub is offline (HF_HUB_OFFLINE=1): set push_to_hub=False.")
    if get_token() is None:
        raise RuntimeError("push_to_hub=True needs a token: run `hf auth login` in a terminal (or set HF_TOKEN) first.")


def _push_to_hub(config: TrainingConfig) -> str:
    """Upload the saved model (not the checkpoints or logs) to a model repo; return its id."""
    from huggingface_hub import create_repo, upload_folder

    repo_id = create_repo(
        config.hub_model_id or Path(config.output_dir).name, private=config.hub_private_repo, exist_ok=True
    ).repo_id
    upload_folder(
        repo_id=repo_id,
        folder_path=config.output_dir,
        commit_message="Train a DDPM (course lesson 05)",
        ignore_patterns=[f"{runs.CHECKPOINTS}/*", f"{runs.LOGS}/*"],
    )
    return repo_id


# ------------------------------------------------------------------------------------------------ the run's set-up
def prepare_model(config: TrainingConfig, model, say=print):
    """The model to train: built from the config if not given; trainable weights in fp32; channels_last or
    torch.compile when the config asks."""
    from accelerate.utils import set_seed
    from diffusers.training_utils import cast_training_params

    set_seed(config.seed)  # the initial weights of a model built here
    model = make_unet(config) if model is None else model
    if any(p.dtype != torch.float32 for p in model.parameters() if p.requires_grad):
        say(
            "The model's trainable weights were not fp32: cast to fp32 (mixed precision computes in 16 bits, "
            "but the optimizer must update fp32 weights)."
        )
        cast_training_params(model, torch.float32)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)  # convolutions then also produce channels_last activations
    if config.torch_compile:
        model.compile()  # in place: the module, its state_dict keys and what is saved stay the same
    return model


def make_optimizer(model, config: TrainingConfig, device_type: str) -> torch.optim.AdamW:
    """AdamW that updates every weight in one fused kernel (CUDA and CPU) or a few multi-tensor ops (elsewhere).

    torch's CPU default runs one small update per weight tensor: on the smoke UNet's 182 tensors the optimizer step
    takes 1.3 ms fused, 6.2 ms foreach and 9.7 ms by default on a 2-core CPU (bench/training.py measures the whole
    step). Not fused on a CPU with torch_compile: compiled backward passes can return gradients laid out differently
    from their weights, which the fused CPU kernel mis-updates without an error (a CUDA one refuses them)."""
    fused = device_type == "cuda" or (device_type == "cpu" and not config.torch_compile)
    fast = {"fused": True} if fused else {"foreach": True}
    return torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.adam_weight_decay, **fast)


def make_ema(unet, config: TrainingConfig, accelerator):
    """The EMA of the weights (saved with every checkpoint), or None when config.use_ema is off."""
    from diffusers.training_utils import EMAModel

    if not config.use_ema:
        return None
    ema = EMAModel(
        unet.parameters(),
        decay=config.ema_max_decay,
        use_ema_warmup=True,
        foreach=True,
        inv_gamma=config.ema_inv_gamma,
        power=config.ema_power,
    )
    accelerator.register_for_checkpointing(ema)
    return ema


def _check_stop_at(stop_at_step: int | None, total_steps: int, done: int = 0) -> None:
    """stop_at_step must lie after the steps already done and within the run."""
    if stop_at_step is not None and not 0 < stop_at_step <= total_steps:
        raise ValueError(f"stop_at_step={stop_at_step}: expected a step between 1 and the run's {total_steps} steps.")
    if stop_at_step is not None and stop_at_step <= done:
        raise ValueError(f"stop_at_step={stop_at_step}, but the run is already at step {done}.")


def _resume(accelerator, checkpoint: Path | None, ema, state: TrainState, say) -> None:
    """Load a checkpoint: weights, optimizer, lr schedule, random states, EMA and the trainer's counters."""
    if checkpoint is None:
        return
    try:
        accelerator.load_state(str(checkpoint))
    except Exception as err:  # a truncated safetensors or pickle file: name the checkpoint and what to do
        raise runs.unreadable_checkpoint(Path(checkpoint), err) from err
    if ema is not None:
        ema.to(accelerator.device)  # loaded onto the CPU
    say(f"resumed from {checkpoint} at step {state.step}")


# ----------------------------------------------------------------------------------------------- during the run
def epochs_of_batches(accelerator, dataloader, state: TrainState, total_steps: int):
    """Batches, epoch after epoch, until the run's last step: each epoch's order depends on (seed, epoch) only, and
    after a resume the batches the epoch already used are skipped."""
    while state.step < total_steps:
        dataloader.set_epoch(state.epoch)
        skip = state.batch_in_epoch
        yield from accelerator.skip_first_batches(dataloader, skip) if skip else dataloader


def end_optimizer_step(state: TrainState, lr_scheduler, ema, unet, batches_per_epoch: int) -> dict:
    """After an optimizer step: advance the lr schedule, the EMA and the counters; return the step's log entry."""
    entry = {"step": state.step + 1, "epoch": state.epoch, "loss": None, "lr": lr_scheduler.get_last_lr()[0]}
    lr_scheduler.step()
    if ema is not None:
        ema.step(unet.parameters())
        entry["ema_decay"] = ema.cur_decay_value
    state.step += 1
    if state.batch_in_epoch >= batches_per_epoch:
        state.epoch, state.batch_in_epoch = state.epoch + 1, 0
    return entry


@dataclass
class StepPlan:
    """What to do after an optimizer step."""

    read_losses: bool
    save_samples: bool
    save_checkpoint: bool
    end: bool  # the last step, or a pause (stop_at_step or Ctrl-C)


def plan_step(
    step: int, config: TrainingConfig, total_steps: int, stop_at_step: int | None, interrupted: bool
) -> StepPlan:
    """Samples every save_image_steps, a checkpoint every checkpointing_steps and before any stop, the losses read
    back every logging_steps and before either (a checkpoint saves the loss history)."""
    done = step >= total_steps
    stopped = interrupted or step == stop_at_step
    samples = step % config.save_image_steps == 0 or done
    checkpoint = step % config.checkpointing_steps == 0 or done or stopped
    return StepPlan(step % config.logging_steps == 0 or samples or checkpoint, samples, checkpoint, done or stopped)


class LossLog:
    """Keeps each step's loss on the device and reads them back in one go when asked (every logging_steps): each
    read makes the CPU wait for the GPU. The values are averaged over the processes and logged."""

    def __init__(self, accelerator, state: TrainState, progress, config: TrainingConfig) -> None:
        self.accelerator, self.state, self.progress, self.config = accelerator, state, progress, config
        self.batches: list[torch.Tensor] = []  # this step's micro-batch losses
        self.pending: list[tuple[dict, torch.Tensor]] = []  # finished steps whose loss is not read yet

    def add_batch(self, loss: torch.Tensor) -> None:
        self.batches.append(loss.detach())

    def end_step(self, entry: dict) -> None:
        self.pending.append((entry, torch.stack(self.batches).mean()))
        self.batches = []
        self.progress.update(1)

    def read(self) -> None:
        """On every process (a collective): the pending losses, into the history, TensorBoard and the bar."""
        if not self.pending:
            return
        losses = torch.stack([loss for _, loss in self.pending])
        values = self.accelerator.reduce(losses, reduction="mean").tolist()
        stepped = [(entry["step"], value) for (entry, _), value in zip(self.pending, values)]
        stop_if_not_finite(stepped, self.config, self.accelerator.mixed_precision)
        for (entry, _), value in zip(self.pending, values):
            entry["loss"] = value
            self.state.history.append(entry)
            self.accelerator.log({k: v for k, v in entry.items() if k not in ("step", "epoch")}, step=entry["step"])
        self.pending.clear()
        last = self.state.history[-1]
        self.progress.set_postfix(loss=f"{last['loss']:.4f}", lr=f"{last['lr']:.2e}", epoch=last["epoch"])


def _dataloader(dataset, config: TrainingConfig):
    """The run's DataLoader (one make_dataloader for the course), with the trainer's collate_fn."""
    return make_dataloader(
        dataset,
        config.train_batch_size,
        seed=config.seed,
        num_workers=config.dataloader_num_workers,
        collate_fn=collate_images,
    )


def _start_logging(accelerator, config: TrainingConfig, images: int, batches: int, total_steps: int) -> None:
    """Start TensorBoard (on the main process) and say what the run will do."""
    if accelerator.is_main_process:
        accelerator.init_trackers("ddpm", config=_tracker_config(config))
    images_per_step = config.train_batch_size * accelerator.num_processes * config.gradient_accumulation_steps
    accelerator.print(
        f"{total_steps} steps ({config.steps_per_epoch(batches)} per epoch over {images} images), "
        f"{images_per_step} images per step, on {accelerator.num_processes} x {accelerator.device.type}"
    )


# --------------------------------------------------------------------------------------------------- at the end
def _raise_interrupted(step: int, total_steps: int, checkpoint: Path | None) -> None:
    """After Ctrl-C: the run is saved; say how to continue it."""
    raise KeyboardInterrupt(
        f"Training stopped at step {step} of {total_steps}; checkpoint saved in {checkpoint}. "
        "Continue with resume='latest': train(config, dataset, resume='latest'), or --resume latest for "
        "scripts/train_ddpm.py."
    )


def _save_model(
    accelerator, config: TrainingConfig, state: TrainState, unet, ema, noise_scheduler, total_steps: int, say
) -> Path | None:
    """Save the history, and after the last step the (EMA) model as a DDPMPipeline folder; push it if asked."""
    model_dir = None
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        runs.save_history(config.output_dir, state.history)
        if state.step >= total_steps:
            with ema_weights(ema, unet):
                model_dir = runs.save_ddpm(unet, noise_scheduler, config.output_dir)
            kind = "EMA " if ema is not None else ""
            say(f"saved the {kind}model to {model_dir} (DDPMPipeline.from_pretrained loads it)")
            if config.push_to_hub:
                say(f"pushed to https://huggingface.co/{_push_to_hub(config)}")
    accelerator.end_training()
    return model_dir


# ------------------------------------------------------------------------------------------------------- the loop
@dataclass
class Run:
    """Everything train() sets up: the accelerator, the prepared model, data, optimizer and schedule, the EMA, the
    counters, and the checkpoint it resumed from."""

    accelerator: Any
    model: Any  # as prepared by accelerate (wrapped with several processes)
    unet: Any  # the model itself, unwrapped
    noise_scheduler: Any
    dataloader: Any
    optimizer: Any
    lr_scheduler: Any
    ema: Any
    state: TrainState
    total_steps: int
    checkpoint: Path | None


def set_up(config: TrainingConfig, dataset, model, noise_scheduler, resume, stop_at_step) -> Run:
    """Check the inputs and the output folder, build or prepare everything, and resume if asked."""
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_cosine_schedule_with_warmup

    accelerator, precision_note = accelerator_for(config)
    say = accelerator.print
    say(f"precision: {precision_note}")
    model = prepare_model(config, model, say)
    noise_scheduler = DDPMScheduler(num_train_timesteps=1000) if noise_scheduler is None else noise_scheduler
    check_training_inputs(config, dataset, model, accelerator.num_processes)
    _check_hub(config)
    checkpoint = _prepare_output_dir(accelerator, config, resume)

    dataloader = accelerator.prepare(_dataloader(dataset, config))
    total_steps = config.total_steps(len(dataloader))
    _check_stop_at(stop_at_step, total_steps)
    optimizer = make_optimizer(model, config, accelerator.device.type)
    lr_scheduler = get_cosine_schedule_with_warmup(optimizer, config.lr_warmup_steps, total_steps)
    model, optimizer, lr_scheduler = accelerator.prepare(model, optimizer, lr_scheduler)
    unet = accelerator.unwrap_model(model)
    ema = make_ema(unet, config, accelerator)
    state = TrainState()
    accelerator.register_for_checkpointing(state)
    _resume(accelerator, checkpoint, ema, state, say)
    _check_stop_at(stop_at_step, total_steps, done=state.step)
    _start_logging(accelerator, config, len(dataset), len(dataloader), total_steps)
    return Run(
        accelerator, model, unet, noise_scheduler, dataloader, optimizer, lr_scheduler, ema, state, total_steps,
        checkpoint,
    )  # fmt: skip


def training_step(run: Run, config: TrainingConfig, batch: dict) -> torch.Tensor:
    """One batch: its flips, noise and timesteps from the step's own generator, the loss, the backward pass, and
    (once the accumulated gradients are complete) clipping and the optimizer step."""
    accelerator, model = run.accelerator, run.model
    generator = step_generator(config.seed, run.state.micro_step, accelerator.process_index, accelerator.device)
    images = random_flips(batch["images"], generator) if config.random_flip else batch["images"]
    with accelerator.accumulate(model):
        loss = diffusion_loss(model, run.noise_scheduler, images, generator)
        accelerator.backward(loss)
        if accelerator.sync_gradients:
            accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        run.optimizer.step()
        run.optimizer.zero_grad()
    run.state.micro_step, run.state.batch_in_epoch = run.state.micro_step + 1, run.state.batch_in_epoch + 1
    return loss


def run_loop(run: Run, config: TrainingConfig, stop_at_step: int | None) -> tuple[bool, Path | None]:
    """The steps until the end, stop_at_step or Ctrl-C, with what each step's plan asks for after it; return whether
    the run was interrupted, and its newest checkpoint."""
    accelerator, state, total_steps = run.accelerator, run.state, run.total_steps
    progress = _progress_bar(total_steps, state.step, disable=not accelerator.is_local_main_process)
    log, last_checkpoint, interrupted = LossLog(accelerator, state, progress, config), None, False
    with StopRequest(accelerator.print) as stop:
        for batch in epochs_of_batches(accelerator, run.dataloader, state, total_steps):
            log.add_batch(training_step(run, config, batch))
            if not accelerator.sync_gradients:
                continue  # still accumulating gradients for this step

            log.end_step(end_optimizer_step(state, run.lr_scheduler, run.ema, run.unet, len(run.dataloader)))
            if accelerator.num_processes == 1 or state.step % config.logging_steps == 0 or state.step >= total_steps:
                interrupted = stop.requested(accelerator)  # with several processes a collective: not every step
            plan = plan_step(state.step, config, total_steps, stop_at_step, interrupted)
            if plan.read_losses:
                log.read()
            if plan.save_samples and accelerator.is_main_process:
                _save_samples(accelerator, run.unet, run.ema, run.noise_scheduler, config, state.step)
            if plan.save_checkpoint:
                last_checkpoint = _save_checkpoint(accelerator, config, state.step)
            if plan.end:
                break
    log.read()
    progress.close()
    return interrupted, last_checkpoint


def train(
    config: TrainingConfig,
    dataset,
    model=None,
    noise_scheduler=None,
    resume: str | Path | None = None,
    stop_at_step: int | None = None,
) -> TrainResult:
    """Train a UNet2DModel to predict the noise added to `dataset`'s images ({'images': tensor in [-1, 1]}).

    resume='latest' (or a checkpoint folder) continues a run exactly; stop_at_step pauses it like Ctrl-C does.
    Lesson 05 writes the same loop out in a cell, without the plumbing (tests/test_lesson05.py keeps them equal)."""
    started = time.perf_counter()
    run = set_up(config, dataset, model, noise_scheduler, resume, stop_at_step)
    interrupted, last_checkpoint = run_loop(run, config, stop_at_step)
    accelerator, state = run.accelerator, run.state
    model_dir = _save_model(
        accelerator, config, state, run.unet, run.ema, run.noise_scheduler, run.total_steps, accelerator.print
    )
    if interrupted:
        _raise_interrupted(state.step, run.total_steps, last_checkpoint)
    last_checkpoint = last_checkpoint or (run.checkpoint and Path(run.checkpoint))
    seconds = time.perf_counter() - started
    return TrainResult(
        Path(config.output_dir),
        state.step,
        run.total_steps,
        state.history,
        seconds,
        accelerator.mixed_precision,
        model_dir,
        last_checkpoint,
    )
