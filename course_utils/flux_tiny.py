"""A tiny FluxPipeline with random weights, built offline for lesson 09: the real classes and the real data flow
(CLIP's pooled vector, T5's rows, 2 x 2 packed latents, RoPE position ids) at a size that runs in a second on a CPU.
The sizes follow diffusers' own test, tests/pipelines/flux/test_pipeline_flux.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from course_utils.models import architectures as arch
from course_utils.models.standins import clip_tokenizer, t5_tokenizer

if TYPE_CHECKING:
    from diffusers import FluxPipeline

SEED = 0
TEXT_WIDTH = 32  # T5's d_model = the transformer's joint_attention_dim; CLIP's pooled width = pooled_projection_dim
T5_MAX_LENGTH = 512  # FLUX.1's tokenizer_2 and its pipeline's largest max_sequence_length

# FLUX.1-dev's scheduler/scheduler_config.json: the shift grows with the number of image tokens (mu).
FLUX_SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000,
    shift=3.0,
    use_dynamic_shifting=True,
    base_shift=0.5,
    max_shift=1.15,
    base_image_seq_len=256,
    max_image_seq_len=4096,
)


def _t5_encoder(vocab_size: int):
    """A 2-layer T5 v1.1 encoder (gated GELU, as FLUX.1's T5-XXL) whose rows are TEXT_WIDTH wide."""
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=vocab_size,
        d_model=TEXT_WIDTH,
        d_kv=8,
        d_ff=37,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        feed_forward_proj="gated-gelu",
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    return T5EncoderModel(config)


def _clip_encoder():
    """A 2-layer CLIPTextModel on the real CLIP vocabulary; FLUX.1 takes only its pooled output (TEXT_WIDTH wide)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    sizes = dict(hidden_size=TEXT_WIDTH, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4)
    return CLIPTextModel(CLIPTextConfig(**arch.CLIP_TEXT_COMMON, **sizes, projection_dim=TEXT_WIDTH))


def _transformer(guidance_embeds: bool):
    """diffusers' test transformer: 4 channels per token (1 latent channel x 2 x 2), one double and one single block."""
    from diffusers import FluxTransformer2DModel

    return FluxTransformer2DModel(
        patch_size=1,
        in_channels=4,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=TEXT_WIDTH,
        pooled_projection_dim=TEXT_WIDTH,
        axes_dims_rope=[4, 4, 8],
        guidance_embeds=guidance_embeds,
    )


def _vae():
    """diffusers' test VAE (1 latent channel, no downsampling) with FLUX.1's scaling_factor and shift_factor."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        block_out_channels=(4,),
        layers_per_block=1,
        latent_channels=1,
        norm_num_groups=1,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.1159,
        scaling_factor=0.3611,
    )


def _seeded(make, *args):
    """Build one part from seed SEED, so each part's weights do not depend on which parts were built before it."""
    torch.manual_seed(SEED)
    return make(*args).eval()


def tiny_flux_pipeline(guidance_embeds: bool = False) -> FluxPipeline:
    """A tiny random FluxPipeline, the same on every call; guidance_embeds=True adds FLUX.1-dev's guidance input."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline

    tokenizer_2 = t5_tokenizer(T5_MAX_LENGTH)
    with torch.random.fork_rng(devices=[]):  # same weights every time, without touching the caller's RNG
        parts = dict(
            text_encoder=_seeded(_clip_encoder),
            text_encoder_2=_seeded(_t5_encoder, len(tokenizer_2)),
            transformer=_seeded(_transformer, guidance_embeds),
            vae=_seeded(_vae),
        )
    pipe = FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(**FLUX_SCHEDULER_CONFIG),
        tokenizer=clip_tokenizer(),
        tokenizer_2=tokenizer_2,
        **parts,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe
