"""`TrainingConfig`: every setting of a DDPM training run in one dataclass, with a `smoke` preset (a tiny UNet at
16 px that learns face-like blobs of the emoji faces in seconds on a CPU) and a `full` preset (the 128 px model of
diffusers' "Train a diffusion model" tutorial), plus the UNet it describes. The precision rule itself is in
training/runtime.py."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from course_utils.checks.values import require_choice, require_positive_int

MIXED_PRECISION = ("auto", "no", "fp16", "bf16")
LOGGERS = ("tensorboard", "none")

# The model of diffusers' "Train a diffusion model" tutorial: six levels, 128 to 512 channels, self-attention at the
# fifth level (8x8 for 128 px images).
FULL_UNET = dict(
    block_out_channels=(128, 128, 256, 256, 512, 512),
    down_block_types=("DownBlock2D", "DownBlock2D", "DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D"),
    layers_per_block=2,
    norm_num_groups=32,
)
# The same design shrunk for a CPU: three levels of 16-32 channels, attention at the last one (4x4 for 16 px images),
# 0.28 M parameters; a training step of 16 images at 16 px takes about 0.05 s of one CPU core.
TINY_UNET = dict(
    block_out_channels=(16, 32, 32),
    down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
    up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
    layers_per_block=1,
    norm_num_groups=4,
)


# Real-valued settings: (lowest, highest, an example), bounds in words below. Each must be a finite
# number.
NUMBER_RANGES = {
    "learning_rate": ("> 0", "", "1e-4"),
    "adam_weight_decay": (">= 0", "", "1e-6"),
    "max_grad_norm": ("> 0", "", "1.0 (gradients longer than this are scaled down)"),
    "ema_max_decay": (">= 0", "< 1", "0.9999 (1 would freeze the EMA weights at their start)"),
    "ema_inv_gamma": ("> 0", "", "1.0"),
    "ema_power": ("> 0", "", "0.75"),
}


def require_number(name: str, value: Any, low: str, high: str, example: str) -> float:
    """Check a real-valued setting: a finite int/float within `low` and `high` (e.g. '> 0', '< 1')."""
    bounds = " and ".join(b for b in (low, high) if b)
    expected = f"expected a finite number {bounds}, e.g. {name}={example}"
    if isinstance(value, str):
        raise ValueError(f"{name}={value!r} is text: {expected} (a number, without quotes).")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name}={value!r}: {expected}.")
    checks = {"> 0": value > 0, ">= 0": value >= 0, "< 1": value < 1, "": True}
    if not (checks[low] and checks[high]):
        raise ValueError(f"{name}={value!r}: {expected}.")
    return float(value)


@dataclass
class TrainingConfig:
    """Every setting of one training run. Sizes count images per process; steps count optimizer updates."""

    # The model: a UNet2DModel with these blocks, for square RGB images of image_size pixels.
    image_size: int = 128
    block_out_channels: tuple = FULL_UNET["block_out_channels"]
    down_block_types: tuple = FULL_UNET["down_block_types"]
    up_block_types: tuple = FULL_UNET["up_block_types"]
    layers_per_block: int = 2
    norm_num_groups: int = 32
    # Data: random horizontal flips are drawn by the trainer from its per-step generator, so a resumed run sees the same
    # ones.
    random_flip: bool = True
    dataloader_num_workers: int = 0
    # Optimisation: AdamW with a linear warm-up, then a cosine decay to 0 at the last step.
    train_batch_size: int = 16
    num_epochs: int = 50
    max_steps: int | None = None  # when set, the run ends after this many optimizer steps, whatever num_epochs says
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1e-4
    lr_warmup_steps: int = 500
    adam_weight_decay: float = 1e-6
    max_grad_norm: float = 1.0
    mixed_precision: str = (
        "auto"  # auto: bf16 on GPUs that have it, fp16 (with a loss scaler) on older ones, none on CPU
    )
    # Speed switches for a GPU, off by default (bench/training.py measures what they give on yours): channels_last
    # stores conv weights and activations height-width-channel, the layout tensor cores read fastest; torch_compile
    # fuses the UNet's kernels (the first steps then take a minute or more to compile). Neither changes what is saved.
    channels_last: bool = False
    torch_compile: bool = False
    # EMA (指数移动平均) of the weights, used for sampling and saving; decay warms up towards ema_max_decay.
    use_ema: bool = True
    ema_max_decay: float = 0.9999
    ema_inv_gamma: float = 1.0
    ema_power: float = 0.75
    # Sample grids during training, from their own generator (seed) so they never change the training.
    eval_batch_size: int = 16
    num_inference_steps: int = 1000
    save_image_steps: int = 500
    # Checkpoints (accelerator.save_state) every checkpointing_steps, keeping the newest checkpoints_total_limit.
    output_dir: str = "outputs/ddpm-128"
    checkpointing_steps: int = 500
    checkpoints_total_limit: int | None = 2
    overwrite_output_dir: bool = False
    logger: str = "tensorboard"
    # The loss is read back from the device every logging_steps steps, all at once: each read makes the CPU wait for the
    # GPU, so reading every step would leave the GPU idle while Python queues the next step. History keeps every step.
    logging_steps: int = 10
    push_to_hub: bool = False
    hub_model_id: str | None = None
    hub_private_repo: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("block_out_channels", "down_block_types", "up_block_types"):
            setattr(self, name, tuple(getattr(self, name)))  # lists from JSON or the command line become tuples
        self.validate()

    @classmethod
    def smoke(cls, **overrides: Any) -> "TrainingConfig":
        """Tiny UNet, 16 px, batches of 16, 300 steps: on the ~100 emoji faces ('emoji-faces') its DDPM samples are
        yellow face-like blobs after about 20 s of one CPU core."""
        settings = dict(
            image_size=16,
            **TINY_UNET,
            train_batch_size=16,
            max_steps=300,
            learning_rate=5e-3,
            lr_warmup_steps=10,
            ema_power=0.75,
            eval_batch_size=8,
            num_inference_steps=50,
            save_image_steps=100,
            checkpointing_steps=100,
            checkpoints_total_limit=2,
            output_dir="outputs/ddpm-smoke",
        )
        return cls(**{**settings, **overrides})

    @classmethod
    def full(cls, **overrides: Any) -> "TrainingConfig":
        """The tutorial's model: 128 px, six levels of 128-512 channels with one attention level, batch 16."""
        # Sample grids use all 1,000 DDPM steps, so draw 8 images every 1,000 steps (a few grids, not a dozen of 16).
        settings = dict(
            image_size=128,
            **FULL_UNET,
            train_batch_size=16,
            num_epochs=50,
            eval_batch_size=8,
            save_image_steps=1000,
            output_dir="outputs/ddpm-128",
        )
        return cls(**{**settings, **overrides})

    @classmethod
    def for_mode(cls, mode: str, **overrides: Any) -> "TrainingConfig":
        """The preset for a course mode: 'smoke' or 'full'."""
        require_choice("mode", mode, ("smoke", "full"))
        return cls.smoke(**overrides) if mode == "smoke" else cls.full(**overrides)

    def validate(self) -> None:
        """Check types, choices and the shape rules of the UNet; raise ValueError naming the field and a fix."""
        for name in (
            "image_size",
            "layers_per_block",
            "norm_num_groups",
            "train_batch_size",
            "num_epochs",
            "gradient_accumulation_steps",
            "eval_batch_size",
            "num_inference_steps",
            "save_image_steps",
            "checkpointing_steps",
            "logging_steps",
        ):
            require_positive_int(name, getattr(self, name))
        for name in ("max_steps", "checkpoints_total_limit"):
            if getattr(self, name) is not None:
                require_positive_int(name, getattr(self, name))
        for f in fields(self):
            if f.type in ("bool", bool) and not isinstance(getattr(self, f.name), bool):
                raise ValueError(
                    f"{f.name}={getattr(self, f.name)!r}: expected True or False (a string such as "
                    "'false' would count as True)."
                )
        for name in ("lr_warmup_steps", "dataloader_num_workers", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name}={value!r}: expected a whole number >= 0.")
        for name, (low, high, example) in NUMBER_RANGES.items():
            require_number(name, getattr(self, name), low, high, example)
        if not isinstance(self.output_dir, (str, Path)) or not str(self.output_dir).strip():
            raise ValueError(f"output_dir={self.output_dir!r}: expected a folder path such as 'outputs/ddpm-128'.")
        require_choice("mixed_precision", self.mixed_precision, MIXED_PRECISION)
        require_choice("logger", self.logger, LOGGERS)
        levels = len(self.block_out_channels)
        if not len(self.down_block_types) == len(self.up_block_types) == levels:
            raise ValueError(
                f"block_out_channels has {levels} entries, down_block_types {len(self.down_block_types)} and "
                f"up_block_types {len(self.up_block_types)}: the UNet needs one block type of each per level."
            )
        bad = [c for c in self.block_out_channels if c % self.norm_num_groups]
        if bad:
            raise ValueError(
                f"block_out_channels {bad} do not divide by norm_num_groups={self.norm_num_groups} (GroupNorm)."
            )
        factor = 2 ** (levels - 1)
        if self.image_size % factor:
            raise ValueError(
                f"image_size={self.image_size}: a {levels}-level UNet halves the image {levels - 1} times, so the size "
                f"must be a multiple of {factor}. Try "
                f"image_size={max(factor, round(self.image_size / factor) * factor)}."
            )

    def steps_per_epoch(self, batches_per_epoch: int) -> int:
        """Optimizer steps in one pass over the data: one per gradient_accumulation_steps batches (a last partial one
        too)."""
        return math.ceil(batches_per_epoch / self.gradient_accumulation_steps)

    def total_steps(self, batches_per_epoch: int) -> int:
        """Optimizer steps in the whole run: max_steps if set, else num_epochs passes over the data."""
        return (
            self.max_steps if self.max_steps is not None else self.num_epochs * self.steps_per_epoch(batches_per_epoch)
        )

    def unet_kwargs(self) -> dict:
        """The arguments of UNet2DModel(...) that this config describes."""
        return dict(
            sample_size=self.image_size,
            in_channels=3,
            out_channels=3,
            layers_per_block=self.layers_per_block,
            block_out_channels=self.block_out_channels,
            down_block_types=self.down_block_types,
            up_block_types=self.up_block_types,
            norm_num_groups=self.norm_num_groups,
        )

    def to_dict(self) -> dict:
        """Plain JSON-ready values (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def save(self, path: str | Path) -> None:
        """Write the config as JSON (the trainer keeps one in every output folder)."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "TrainingConfig":
        """Read a config written by save(); unknown keys (from a newer course version) are ignored."""
        values = json.loads(Path(path).read_text())
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def replace(self, **changes: Any) -> "TrainingConfig":
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)


def make_unet(config: TrainingConfig):
    """A freshly initialised UNet2DModel with the architecture the config describes."""
    from diffusers import UNet2DModel

    return UNet2DModel(**config.unet_kwargs())
