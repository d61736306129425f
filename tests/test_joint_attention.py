"""Lesson 09's word maps on the MMDiT: the tracer leaves the image bit-identical, restores the processors, computes
the weights the joint attention really uses, and gives one [0, 1] map per word."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from course_utils.joint_attention import joint_attention_probs, trace_joint_attention
from course_utils.models.emoji import shipped_model

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one CPU thread for these tiny models


@pytest.fixture(scope="module")
def pipe():
    from diffusers import StableDiffusion3Pipeline

    pipe = StableDiffusion3Pipeline.from_pretrained(shipped_model("emoji-sd3"))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_the_image_is_bit_identical_and_the_processors_come_back(pipe):
    before = dict(pipe.transformer.attn_processors)
    plain = pipe("red apple", num_inference_steps=3, generator=torch.Generator().manual_seed(0), output_type="pt")
    with trace_joint_attention(pipe) as trace:
        traced = pipe("red apple", num_inference_steps=3, generator=torch.Generator().manual_seed(0), output_type="pt")
    assert torch.equal(plain.images, traced.images)
    assert dict(pipe.transformer.attn_processors) == before
    assert trace.count == 3 * pipe.transformer.config.num_layers
    maps = trace.word_maps("red apple")
    assert list(maps) == ["red", "apple"]
    for heat in maps.values():
        assert heat.shape == (64, 64) and heat.min() == 0 and heat.max() == 1


def test_the_weights_are_the_ones_the_attention_uses(pipe):
    """Weights times values over all keys give the processor's attention output (before its output projection)."""
    attn = pipe.transformer.transformer_blocks[0].attn
    g = torch.Generator().manual_seed(0)
    image, text = torch.randn(2, 64, 128, generator=g), torch.randn(2, 20, 128, generator=g)
    with torch.no_grad():
        to_text = joint_attention_probs(attn, image, text)
        heads, dim = attn.heads, attn.to_k.out_features // attn.heads
        q = attn.norm_q(attn.to_q(image).view(2, -1, heads, dim).transpose(1, 2))
        k = torch.cat(
            [
                attn.norm_k(attn.to_k(image).view(2, -1, heads, dim).transpose(1, 2)),
                attn.norm_added_k(attn.add_k_proj(text).view(2, -1, heads, dim).transpose(1, 2)),
            ],
            dim=2,
        )
        probs = (q @ k.transpose(-1, -2) * dim**-0.5).softmax(-1)
        v = torch.randn(2, heads, 84, dim, generator=g)
        sdpa = F.scaled_dot_product_attention(q, k, v)
    assert torch.allclose(probs @ v, sdpa, atol=1e-5)
    assert torch.allclose(probs[..., 64:].mean(1), to_text, atol=1e-6)
    assert (to_text.sum(-1) < 1).all() and (to_text > 0).all()


def test_maps_before_any_generation_say_what_to_do(pipe):
    with trace_joint_attention(pipe) as trace:
        pass
    with pytest.raises(ValueError, match="generate an image inside"):
        trace.word_maps("red apple")
