"""Lesson 09's word maps on an MMDiT (SD3's transformer): the attention weights from image tokens to text tokens in
the joint attention, summed over heads, blocks and steps. As lesson 06's tracer, the weights are computed on the
side and the original processor makes the output, so the image is bit-identical with and without the tracer."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F

from course_utils.attention import normalize_map, prompt_words


def joint_projections(attn, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor):
    """Query, key and value of SD3's joint attention as diffusers' JointAttnProcessor2_0 makes them: image rows then
    text rows, split into heads, with the q/k norms: each (batch, heads, image + text tokens, head_dim)."""
    batch = hidden_states.shape[0]
    head_dim = attn.to_k.out_features // attn.heads

    def heads(x):
        return x.view(batch, -1, attn.heads, head_dim).transpose(1, 2)

    query, key, value = (
        heads(attn.to_q(hidden_states)),
        heads(attn.to_k(hidden_states)),
        heads(attn.to_v(hidden_states)),
    )
    if attn.norm_q is not None:
        query = attn.norm_q(query)
    if attn.norm_k is not None:
        key = attn.norm_k(key)
    text_q, text_k = heads(attn.add_q_proj(encoder_hidden_states)), heads(attn.add_k_proj(encoder_hidden_states))
    text_v = heads(attn.add_v_proj(encoder_hidden_states))
    if attn.norm_added_q is not None:
        text_q = attn.norm_added_q(text_q)
    if attn.norm_added_k is not None:
        text_k = attn.norm_added_k(text_k)
    return torch.cat([query, text_q], dim=2), torch.cat([key, text_k], dim=2), torch.cat([value, text_v], dim=2)


def joint_attention_probs(attn, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor) -> torch.Tensor:
    """Softmax weights from every image token (query) to every text token (key) in one joint attention, as
    JointAttnProcessor2_0 computes them (image and text keys together, q/k norms included), mean over heads:
    (batch, image tokens, text tokens)."""
    image_tokens = hidden_states.shape[1]
    query, key, _ = joint_projections(attn, hidden_states, encoder_hidden_states)
    scores = query[:, :, :image_tokens] @ key.transpose(-1, -2) * query.shape[-1] ** -0.5
    return scores.float().softmax(dim=-1)[..., image_tokens:].mean(dim=1)


class JointAttentionTrace:
    """What trace_joint_attention recorded: the summed image-to-text weights of the conditional images, per text
    token, on the grid of image tokens."""

    def __init__(self, tokenizer, vae_scale_factor: int, text_tokens: int = 77):
        self.tokenizer, self.vae_scale_factor, self.text_tokens = tokenizer, vae_scale_factor, text_tokens
        self.total: torch.Tensor | None = None  # (batch, text tokens, h, w)
        self.count = 0
        self.grid: tuple[int, int] = (0, 0)
        self.image_size: tuple[int, int] = (0, 0)

    def on_transformer_call(self, module, args, kwargs) -> None:
        """Note the grid of image tokens of this call (latent size / patch size)."""
        latents = kwargs.get("hidden_states", args[0] if args else None)
        patch = module.config.patch_size
        self.grid = (latents.shape[-2] // patch, latents.shape[-1] // patch)
        self.image_size = (latents.shape[-2] * self.vae_scale_factor, latents.shape[-1] * self.vae_scale_factor)

    def record(self, attn, hidden_states, encoder_hidden_states) -> None:
        """Add one block's weights of the conditional half of a guidance batch (or of the whole batch)."""
        with torch.no_grad():
            probs = joint_attention_probs(attn, hidden_states, encoder_hidden_states)[..., : self.text_tokens]
        half = probs.shape[0] // 2
        probs = probs[half:] if half and probs.shape[0] % 2 == 0 else probs
        maps = probs.transpose(1, 2).reshape(probs.shape[0], probs.shape[2], *self.grid).cpu()
        self.total = maps if self.total is None else self.total + maps
        self.count += 1

    def word_maps(self, prompt: str, index: int = 0) -> dict[str, torch.Tensor]:
        """{word: (H, W) map in [0, 1]} for every word of the prompt, over all blocks and steps."""
        if self.total is None:
            raise ValueError("nothing was recorded: generate an image inside the `with trace_joint_attention(...)`.")
        maps = {}
        for word in prompt_words(self.tokenizer, prompt):
            heat = self.total[index, list(word.positions)].sum(0) / self.count
            heat = F.interpolate(heat[None, None], size=self.image_size, mode="bilinear", align_corners=False)[0, 0]
            maps[word.text] = normalize_map(heat + maps.get(word.text, 0))
        return maps


class JointAttentionRecorder:
    """Wraps a block's attention processor: records the weights on the side, returns the original's output."""

    def __init__(self, original: Any, trace: JointAttentionTrace):
        self.original, self.trace = original, trace

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, *args, **kwargs):
        if encoder_hidden_states is not None:
            self.trace.record(attn, hidden_states, encoder_hidden_states)
        return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, *args, **kwargs)


@contextmanager
def trace_joint_attention(pipe):
    """Record the joint attention of `pipe.transformer` (an SD3Transformer2DModel) while the `with` block runs;
    the processors are restored afterwards."""
    transformer = pipe.transformer
    trace = JointAttentionTrace(pipe.tokenizer, pipe.vae_scale_factor)
    originals = transformer.attn_processors
    transformer.set_attn_processor({name: JointAttentionRecorder(p, trace) for name, p in originals.items()})
    hook = transformer.register_forward_pre_hook(trace.on_transformer_call, with_kwargs=True)
    try:
        yield trace
    finally:
        hook.remove()
        transformer.set_attn_processor(originals)
