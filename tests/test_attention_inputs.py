"""Word maps are refused for a prompt that was not traced, and a trace holding two image sizes says
so."""

from __future__ import annotations

import pytest
from test_attention import PROMPT, generate, pipe  # noqa: F401  (pipe is a fixture)

from course_utils.attention import trace_cross_attention


def test_word_map_of_another_prompt_is_refused(pipe):  # noqa: F811
    with trace_cross_attention(pipe) as trace:
        generate(pipe, "a red apple on a table")
    assert trace.word_map("a red apple on a table", "apple").shape == (64, 64)
    with pytest.raises(
        ValueError,
        match=r"prompt='a green pear on a table' is not a prompt of the traced "
        r"generation \(it encoded 'a red apple on a table'\)",
    ):
        trace.word_map("a green pear on a table", "table")
    with pytest.raises(ValueError, match="not a prompt of the traced generation"):
        trace.word_maps("a red apple")  # a prefix of the traced prompt is another prompt too


def test_two_image_sizes_in_one_trace_are_explained(pipe):  # noqa: F811
    with trace_cross_attention(pipe) as trace:
        generate(pipe, PROMPT, height=64, width=64)
        generate(pipe, PROMPT, height=32, width=32)
    with pytest.raises(ValueError, match=r"generations of different sizes .* trace.clear\(\)"):
        trace.word_map(PROMPT, "photo")
    last = trace.steps[-2:]  # the second generation alone works
    assert trace.word_map(PROMPT, "photo", steps=last).shape == (32, 32)


def test_clear_forgets_the_traced_prompts(pipe):  # noqa: F811
    with trace_cross_attention(pipe) as trace:
        generate(pipe, "a red apple")
        trace.clear()
        generate(pipe, "a blue car")
    assert trace.word_map("a blue car", "car").shape == (64, 64)
    with pytest.raises(ValueError, match="not a prompt of the traced generation"):
        trace.word_map("a red apple", "apple")
