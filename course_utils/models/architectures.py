"""Model configurations for the stand-ins: `tiny` ones for smoke mode and CI, and `full` ones copied from the
real hub repos, so a stand-in built at full size has the real architecture (and the real timings on a GPU)."""

from __future__ import annotations

# google/ddpm-cat-256: a pixel-space UNet2DModel with self-attention at the 16x16 level.
DDPM_UNET = {
    "full": dict(
        sample_size=256,
        in_channels=3,
        out_channels=3,
        layers_per_block=2,
        block_out_channels=(128, 128, 256, 256, 512, 512),
        down_block_types=("DownBlock2D",) * 4 + ("AttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "AttnUpBlock2D") + ("UpBlock2D",) * 4,
        flip_sin_to_cos=False,
        freq_shift=1,
        downsample_padding=0,
        norm_eps=1e-6,
        norm_num_groups=32,
    ),
    "tiny": dict(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        flip_sin_to_cos=False,
        freq_shift=1,
        downsample_padding=0,
        norm_eps=1e-6,
        norm_num_groups=8,
    ),
}
DDPM_SCHEDULER = dict(
    num_train_timesteps=1000,
    beta_start=0.0001,
    beta_end=0.02,
    beta_schedule="linear",
    variance_type="fixed_small",
    clip_sample=True,
)

# Stable Diffusion v1.x. Shape contracts kept by the tiny versions too: the VAE has four blocks (8x smaller
# latents) and 4 latent channels; the text encoder's hidden size equals the UNet's cross_attention_dim; 77 tokens.
SD_UNET = {
    "full": dict(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=768,
        attention_head_dim=8,
        norm_num_groups=32,
    ),
    "tiny": dict(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64, 64),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=8,
    ),
    # The course's trained text-to-image emoji model: 8 x 8 latents of 64 px emoji, text width 64.
    # Copied in notebooks/07_text_to_image_from_scratch.ipynb;
    # kept equal by tests/test_lesson07.py::test_notebook_configs_are_the_emoji_models
    "emoji": dict(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(64, 96, 96),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=64,
        attention_head_dim=8,
        norm_num_groups=16,
    ),
}
SD_VAE = {
    "full": dict(
        sample_size=512,
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        layers_per_block=2,
        block_out_channels=(128, 256, 512, 512),
        norm_num_groups=32,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
    ),
    "tiny": dict(
        sample_size=64,
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        layers_per_block=1,
        block_out_channels=(16, 32, 32, 32),
        norm_num_groups=8,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
    ),
    # Copied in notebooks/07_text_to_image_from_scratch.ipynb;
    # kept equal by tests/test_lesson07.py::test_notebook_configs_are_the_emoji_models
    "emoji": dict(
        sample_size=64,
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        layers_per_block=1,
        block_out_channels=(16, 32, 64, 64),
        norm_num_groups=8,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
    ),
}
SD_TEXT_ENCODER = {
    "full": dict(
        hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, projection_dim=768
    ),
    "tiny": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, projection_dim=32),
    # Copied in notebooks/07_text_to_image_from_scratch.ipynb;
    # kept equal by tests/test_lesson07.py::test_notebook_configs_are_the_emoji_models
    "emoji": dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4, projection_dim=64),
}
# Copied in notebooks/07_text_to_image_from_scratch.ipynb (with SD_TEXT_ENCODER["emoji"]);
# kept equal by tests/test_lesson07.py::test_notebook_configs_are_the_emoji_models
CLIP_TEXT_COMMON = dict(
    vocab_size=49408,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    bos_token_id=0,
    eos_token_id=2,
    pad_token_id=1,
)
# scheduler/scheduler_config.json exactly as the SD 1.x repos ship it: only these keys. Keys a repo leaves out (such as
# timestep_spacing) take each scheduler class's own default when a lesson swaps schedulers with from_config, so a
# stand-in must leave them out too, or smoke mode would step through other timesteps than full mode.
SD_SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    clip_sample=False,
    set_alpha_to_one=False,
    steps_offset=1,
    skip_prk_steps=True,
    trained_betas=None,
)

# Stable Diffusion 3's MMDiT. The emoji model: 8 x 8 latents of 64 px emoji with patch_size=1 (64 image tokens),
# text rows 128 wide (two 64-wide CLIP encoders side by side, as SD3 puts CLIP-L and CLIP-G side by side).
SD3_TRANSFORMER = {
    "emoji": dict(
        sample_size=8,
        patch_size=1,
        in_channels=4,
        out_channels=4,
        num_layers=4,
        attention_head_dim=32,
        num_attention_heads=4,
        joint_attention_dim=128,
        caption_projection_dim=128,
        pooled_projection_dim=128,
        pos_embed_max_size=16,
        qk_norm="rms_norm",
    ),
}
