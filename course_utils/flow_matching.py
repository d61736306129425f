"""Flow matching as Stable Diffusion 3 trains it, for lesson 09 and scripts/train_emoji_models.py: the rectified-flow
loss of diffusers' `train_dreambooth_lora_sd3.py`, the text layout StableDiffusion3Pipeline builds when it has no T5,
and an attention processor that trains on that layout with 78 text rows instead of 333, computing the same function."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from course_utils.joint_attention import joint_projections

T5_ROWS = 256  # StableDiffusion3Pipeline's default max_sequence_length: the rows T5 fills, zeros without T5


# Copied in notebooks/09_flow_matching_and_transformers.ipynb;
# kept equal by tests/test_lesson09.py::test_notebook_loss_is_the_scripts
def flow_matching_loss(
    transformer,
    scheduler,
    latents: torch.Tensor,
    prompt_embeds: torch.Tensor,
    pooled_prompt_embeds: torch.Tensor,
    generator: torch.Generator,
    weighting_scheme: str = "logit_normal",
) -> torch.Tensor:
    """SD3's objective: mix latents and noise on a straight line, (1 - sigma) * x + sigma * noise, and predict the
    velocity noise - x. Sigma is drawn as SD3 draws it (logit-normal, then through the scheduler's shift)."""
    from diffusers.training_utils import compute_density_for_timestep_sampling, compute_loss_weighting_for_sd3

    draw = dict(generator=generator, device=generator.device)  # the same numbers on a CPU and on a GPU
    noise = torch.randn(latents.shape, **draw).to(latents.device)
    u = compute_density_for_timestep_sampling(weighting_scheme, latents.shape[0], logit_mean=0.0, logit_std=1.0, **draw)
    steps = scheduler.config.num_train_timesteps
    indices = (u * steps).long().clamp(max=steps - 1)
    timesteps = scheduler.timesteps.to(latents.device)[indices.to(latents.device)]
    sigmas = (timesteps / steps).view(-1, 1, 1, 1)
    noisy = (1.0 - sigmas) * latents + sigmas * noise
    prediction = transformer(
        hidden_states=noisy,
        timestep=timesteps,
        encoder_hidden_states=prompt_embeds,
        pooled_projections=pooled_prompt_embeds,
        return_dict=False,
    )[0]
    weighting = compute_loss_weighting_for_sd3(weighting_scheme, sigmas)
    target = noise - latents
    return (weighting * (prediction - target) ** 2).reshape(latents.shape[0], -1).mean(dim=1).mean()


def without_t5(clip_embeds: torch.Tensor, rows: int = T5_ROWS) -> torch.Tensor:
    """The text rows StableDiffusion3Pipeline hands the transformer when text_encoder_3 is None: the CLIP rows, then
    `rows` rows of zeros where T5's would be."""
    zeros = clip_embeds.new_zeros(clip_embeds.shape[0], rows, clip_embeds.shape[-1])
    return torch.cat([clip_embeds, zeros], dim=1)


class RepeatedLastRowAttnProcessor:
    """SD3's joint attention (diffusers' JointAttnProcessor2_0) for text whose last row stands for `repeats` equal
    rows. The pipeline's 256 zero rows stay equal to each other through every layer: each one is the same input
    through the same weights and sees the same keys. N equal keys with equal values weigh in an attention as one
    key with log(N) added to its score. So the transformer computes the same function, up to float rounding, on
    77 + 1 rows as on 77 + 256 (tests/test_flow_matching.py checks it), with far fewer rows to compute."""

    def __init__(self, repeats: int = T5_ROWS):
        self.repeats = repeats

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, *args, **kwargs):
        batch_size, image_rows = hidden_states.shape[:2]
        query, key, value = joint_projections(attn, hidden_states, encoder_hidden_states)
        bias = query.new_zeros(1, key.shape[2])  # added to every query's scores: only the last key gets log(N)
        bias[0, -1] = math.log(self.repeats)
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=bias)
        out = out.transpose(1, 2).reshape(batch_size, -1, attn.heads * query.shape[-1]).to(query.dtype)
        image, text = out[:, :image_rows], out[:, image_rows:]
        if not attn.context_pre_only:
            text = attn.to_add_out(text)
        return attn.to_out[1](attn.to_out[0](image)), text


# ------------------------------------------------------------------------------------------ emoji-sd3's parts
def make_transformer():
    """A fresh SD3Transformer2DModel (MMDiT) sized for 8 x 8 emoji latents: 4 joint blocks, 4 heads of 32."""
    from diffusers import SD3Transformer2DModel

    from course_utils.models.architectures import SD3_TRANSFORMER

    return SD3Transformer2DModel(**SD3_TRANSFORMER["emoji"])


def with_projection(clip_text_model):
    """emoji-sd's CLIPTextModel as the CLIPTextModelWithProjection SD3 loads: the same weights, and an identity
    text_projection, so its text_embeds are the pooled output SD3 feeds the transformer."""
    from transformers import CLIPTextModelWithProjection

    config = clip_text_model.config
    model = CLIPTextModelWithProjection(config)
    # transformers 5.6 flattened CLIPTextModel (no .text_model); the model with a projection still has it
    model.text_model.load_state_dict(clip_text_model.state_dict())
    with torch.no_grad():
        model.text_projection.weight.copy_(torch.eye(config.projection_dim, config.hidden_size))
    return model.eval()


@torch.no_grad()
def clip_embeds(text_encoders, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """What StableDiffusion3Pipeline takes from its two CLIP encoders for padded token ids: each one's
    second-to-last hidden states side by side (B, 77, width_1 + width_2), and their text_embeds side by side."""
    rows, pooled = [], []
    for encoder in text_encoders:
        out = encoder(input_ids, output_hidden_states=True)
        rows.append(out.hidden_states[-2])
        pooled.append(out[0])
    return torch.cat(rows, dim=-1), torch.cat(pooled, dim=-1)


EMOJI_SD3_SHIFT = 3.0  # the sampling shift emoji-sd3 ships with (bench/emoji_quality.py measures the others)


def emoji_sd3_scheduler(shift: float = EMOJI_SD3_SHIFT):
    """The scheduler emoji-sd3 ships: SD3's FlowMatchEulerDiscreteScheduler with a static shift."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)


def silent_t5(tokenizer, width: int = 128):
    """A T5EncoderModel whose weights are all zero, so it returns zeros for any prompt: exactly the rows
    StableDiffusion3Pipeline uses when text_encoder_3=None. emoji-sd3 ships it because the plain
    DiffusionPipeline.from_pretrained(folder) needs every component of the layout in the folder."""
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=width,
        d_kv=8,
        d_ff=8,
        num_layers=1,
        num_heads=1,
        relative_attention_num_buckets=8,
        feed_forward_proj="gated-gelu",
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = T5EncoderModel(config)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    return model.eval()


def latent_factors(means: torch.Tensor, stds: torch.Tensor) -> tuple[float, float]:
    """SD3's VAE normalisation, measured: shift_factor is the mean of sampled latents, scaling_factor 1 / their
    spread around it. The pipeline decodes latents / scaling_factor + shift_factor."""
    generator = torch.Generator().manual_seed(0)
    latents = means + stds * torch.randn(means.shape, generator=generator)
    shift = float(latents.mean())
    return float(1.0 / (latents - shift).std()), shift
