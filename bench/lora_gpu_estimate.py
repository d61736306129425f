"""Estimate, without a GPU, what LoRA training of Stable Diffusion 1.5 at 512 px needs: memory and
time per step.

It builds the real UNet architecture on PyTorch's meta device (shapes only, no memory, no
arithmetic), adds a LoRA, runs one training step's forward and backward and counts (1) the bytes of
the activations autograd keeps for the backward pass, with and without gradient checkpointing, and
(2) the floating-point operations. Then:

  memory ~ frozen weights (UNet + text encoder, 16-bit)
           + LoRA weights, gradients and AdamW moments (fp32)
           + kept activations (16-bit) + 1 GB for the CUDA context and the allocator's slack
  time   ~ operations / (the card's dense 16-bit peak x an assumed utilisation)

    python bench/lora_gpu_estimate.py      # batch 1, rank 4, RTX 4090 / 3090 figures

These are calculations, not measurements: on a GPU, measure with torch.cuda.max_memory_allocated().
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from course_utils.models.architectures import SD_UNET  # noqa: E402

CARDS = {
    "RTX 4090 (24 GB)": 165e12,
    "RTX 3090 (24 GB)": 71e12,
}  # dense fp16/bf16 tensor peak, FLOP/s
TEXT_ENCODER_PARAMS = 123_060_480  # CLIP ViT-L/14's text model, frozen, used once per step
CONTEXT_GB = 1.0


def measure(batch: int, rank: int, checkpointing: bool) -> dict:
    """Kept activation bytes (at 2 bytes per number) and FLOPs of one step, on meta tensors."""
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig
    from torch.utils.flop_counter import FlopCounterMode

    kept = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        kept[0] += t.numel() * 2
        return t

    with torch.device("meta"):
        unet = UNet2DConditionModel(**SD_UNET["full"])
        unet.requires_grad_(False)
        unet.add_adapter(
            LoraConfig(
                r=rank,
                lora_alpha=rank,
                init_lora_weights="gaussian",
                target_modules=["to_q", "to_k", "to_v", "to_out.0"],
            )
        )
        if checkpointing:
            unet.enable_gradient_checkpointing()
        unet.train()
        latents, text = torch.randn(batch, 4, 64, 64), torch.randn(batch, 77, 768)
        t = torch.randint(0, 1000, (batch,))
        with (
            FlopCounterMode(display=False) as flops,
            torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x),
        ):
            unet(latents, t, text).sample.float().pow(2).mean().backward()
        params = sum(p.numel() for p in unet.parameters())
        lora = sum(p.numel() for p in unet.parameters() if p.requires_grad)
    return dict(kept=kept[0], flops=flops.get_total_flops(), params=params, lora=lora)


def main() -> None:
    """Print the memory and time estimates for each setting."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--utilisation", type=float, default=0.4)
    args = parser.parse_args()
    for checkpointing in (False, True):
        m = measure(args.batch, args.rank, checkpointing)
        weights = (m["params"] - m["lora"] + TEXT_ENCODER_PARAMS) * 2
        training = m["lora"] * 4 * 4  # fp32 weights, gradients and two AdamW moments
        total = (weights + training + m["kept"]) / 1e9 + CONTEXT_GB
        print(
            f"gradient checkpointing {'on ' if checkpointing else 'off'}: "
            f"UNet {m['params'] / 1e6:.0f} M "
            f"parameters, LoRA {m['lora']:,}; weights {weights / 1e9:.2f} GB, kept activations "
            f"{m['kept'] / 1e9:.2f} GB -> peak about {total:.1f} GB; "
            f"{m['flops'] / 1e12:.2f} TFLOP a step"
        )
        for card, peak in CARDS.items():
            seconds = m["flops"] / (peak * args.utilisation)
            print(
                f"    {card}: about {seconds * 1000:.0f} ms a step "
                f"at {args.utilisation:.0%} of its "
                f"{peak / 1e12:.0f} TFLOP/s (batch {args.batch})"
            )


if __name__ == "__main__":
    main()
