"""The pieces of a small text-to-image latent diffusion model in the Stable Diffusion layout, and how to train them:
the VAE's loss and its scaling factor, the denoising loss with caption dropout, and assembling the parts as a
`StableDiffusionPipeline`. Lesson 07 walks through each; scripts/train_emoji_models.py runs them for hours."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from course_utils.models import architectures as arch

EMOJI_SIZE = 64  # the shipped emoji are 64 px; the VAE turns them into 8 x 8 x 4 latents


# ------------------------------------------------------------------------------------------------------- the parts
def make_vae():
    """A fresh AutoencoderKL with SD's contract (four blocks: 8x smaller, 4 latent channels), sized for 64 px emoji."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(**arch.SD_VAE["emoji"])


def make_text_encoder():
    """A fresh CLIPTextModel (77 positions, the real 49,408-token vocabulary) sized for short emoji names."""
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(**arch.CLIP_TEXT_COMMON, **arch.SD_TEXT_ENCODER["emoji"]))


def make_unet():
    """A fresh UNet2DConditionModel whose cross_attention_dim equals the text encoder's width."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**arch.SD_UNET["emoji"])


def make_scheduler():
    """SD 1.x's noise schedule (scaled_linear betas 0.00085-0.012 over 1,000 steps), as a DDPMScheduler for training."""
    from diffusers import DDPMScheduler

    return DDPMScheduler.from_config(arch.SD_SCHEDULER_CONFIG)


# ------------------------------------------------------------------------------------------------------- the text
def tokenize(tokenizer, captions: list[str]) -> torch.Tensor:
    """Token ids padded to the tokenizer's 77 positions, exactly as StableDiffusionPipeline pads a prompt."""
    return tokenizer(
        captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids


# -------------------------------------------------------------------------------------------------------------- VAE
# Copied in notebooks/07_text_to_image_from_scratch.ipynb;
# kept equal by tests/test_lesson07.py::test_notebook_vae_loss_is_the_scripts
def vae_loss(
    vae, images: torch.Tensor, generator: torch.Generator, kl_weight: float = 1e-6
) -> tuple[torch.Tensor, dict]:
    """Reconstruction (L1 + 0.5 MSE) of a sampled latent, plus a small KL term that keeps the latents near N(0, 1)."""
    posterior = vae.encode(images).latent_dist
    recon = vae.decode(posterior.sample(generator)).sample
    l1, mse = F.l1_loss(recon, images), F.mse_loss(recon, images)
    kl = posterior.kl().mean() / images[0].numel()
    loss = l1 + 0.5 * mse + kl_weight * kl
    return loss, {"l1": l1.item(), "mse": mse.item(), "kl": kl.item()}


def decoder_loss(vae, latents: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Reconstruction loss through the decoder alone: the encoder (and so every latent) stays fixed."""
    recon = vae.decode(latents).sample
    return F.l1_loss(recon, images) + 0.5 * F.mse_loss(recon, images)


def psnr(reconstruction: torch.Tensor, images: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of images in [-1, 1] (a peak-to-peak range of 2)."""
    mse = F.mse_loss(reconstruction.clamp(-1, 1), images).item()
    return 10 * torch.log10(torch.tensor(4.0 / max(mse, 1e-12))).item()


@torch.no_grad()
def encode_all(vae, images: torch.Tensor, batch_size: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean and standard deviation of every image's latent distribution, in batches."""
    means, stds = [], []
    for start in range(0, len(images), batch_size):
        dist = vae.encode(images[start : start + batch_size]).latent_dist
        means.append(dist.mean)
        stds.append(dist.std)
    return torch.cat(means), torch.cat(stds)


def scaling_factor(means: torch.Tensor, stds: torch.Tensor) -> float:
    """1 / the standard deviation of sampled latents: the factor that gives the UNet latents of unit variance.
    SD 1.x's VAE has about 0.182 (its latents spread about 5.5), measured the same way on its own training images."""
    generator = torch.Generator().manual_seed(0)
    latents = means + stds * torch.randn(means.shape, generator=generator)
    return float(1.0 / latents.std())


# ------------------------------------------------------------------------------------------------ the UNet's loss
# Copied in notebooks/07_text_to_image_from_scratch.ipynb;
# kept equal by tests/test_lesson07.py::test_notebook_drop_captions_is_the_scripts
def drop_captions(
    input_ids: torch.Tensor, empty_ids: torch.Tensor, p: float, generator: torch.Generator
) -> torch.Tensor:
    """Replace each caption by the empty prompt with probability p: the model then also learns the unconditional
    prediction that classifier-free guidance subtracts."""
    drop = torch.rand(input_ids.shape[0], generator=generator) < p
    return torch.where(drop[:, None], empty_ids.expand_as(input_ids), input_ids)


# Copied in notebooks/07_text_to_image_from_scratch.ipynb;
# kept equal by tests/test_lesson07.py::test_notebook_loss_is_the_scripts
def text_to_image_loss(
    unet,
    text_encoder,
    scheduler,
    latents: torch.Tensor,
    input_ids: torch.Tensor,
    generator: torch.Generator,
    snr_gamma: float | None = 5.0,
) -> torch.Tensor:
    """SD's training objective: noise scaled latents at random timesteps and predict the noise from the text.
    With snr_gamma, each timestep's loss is weighted by min(SNR, gamma) / SNR (min-SNR weighting), which stops the
    nearly clean timesteps from dominating."""
    # drawn on the generator's device (the CPU), then moved: the same numbers on a CPU and on a GPU
    draw = dict(generator=generator, device=generator.device)
    noise = torch.randn(latents.shape, **draw).to(latents.device)
    steps = scheduler.config.num_train_timesteps
    timesteps = torch.randint(0, steps, (latents.shape[0],), **draw).to(latents.device)
    noisy = scheduler.add_noise(latents, noise, timesteps)
    encoder_hidden_states = text_encoder(input_ids)[0]
    noise_pred = unet(noisy, timesteps, encoder_hidden_states, return_dict=False)[0]
    if snr_gamma is None:
        return F.mse_loss(noise_pred, noise)
    weight = min_snr_weight(scheduler, timesteps, snr_gamma)
    per_image = F.mse_loss(noise_pred, noise, reduction="none").mean(dim=(1, 2, 3))
    return (weight * per_image).mean()


def min_snr_weight(scheduler, timesteps: torch.Tensor, snr_gamma: float = 5.0) -> torch.Tensor:
    """min(SNR, gamma) / SNR of each timestep, with SNR = alphas_cumprod / (1 - alphas_cumprod): the weights
    text_to_image_loss gives each image's loss (1 for noisy timesteps, below 1 for nearly clean ones)."""
    alphas_cumprod = scheduler.alphas_cumprod.to(timesteps.device)[timesteps]
    snr = alphas_cumprod / (1 - alphas_cumprod)
    return torch.clamp(snr, max=snr_gamma) / snr


# --------------------------------------------------------------------------------------------------- the pipeline
def emoji_scheduler():
    """The scheduler emoji-sd ships: UniPC on SD 1.x's noise schedule, made as the diffusers docs swap it in
    (`UniPCMultistepScheduler.from_config(pipe.scheduler.config)`). from_config keeps SD's keys that UniPC does not
    use (clip_sample=False, set_alpha_to_one=False, skip_prk_steps=True), so DDIM and PNDM made from this config get
    SD's settings, not their defaults (DDIM's clip_sample=True would clip the latents and draw no picture)."""
    from diffusers import UniPCMultistepScheduler

    return UniPCMultistepScheduler.from_config(arch.SD_SCHEDULER_CONFIG)


def assemble_pipeline(vae, text_encoder, tokenizer, unet):
    """The parts as a StableDiffusionPipeline with no safety checker and the shipped emoji-sd's scheduler (see
    emoji_scheduler). The saved folder names this scheduler, so every from_pretrained samples with it; SD 1.x's PNDM
    needs about 50 steps on this small model."""
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=emoji_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
