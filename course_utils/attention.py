"""Cross-attention heat maps (what DAAM does) on current diffusers: record, for every word of the prompt, where in
the image the UNet's cross-attention layers look, without changing a single pixel of the generated image.

How: `trace_cross_attention(pipe)` wraps the processor of every cross-attention layer (`attn2`) in a recorder. The
recorder computes the attention probabilities softmax(Q K^T / sqrt(d)) *on the side*, keeps the conditional half of
the classifier-free-guidance batch ([uncond, cond]), averages the heads, and stores the result; then it hands the call
to the original processor (SDPA), which computes the layer's output exactly as without tracing. On exit (also after
an exception) the original processors come back.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F
from PIL import Image

from course_utils.checks.values import did_you_mean

END_OF_WORD = "</w>"  # CLIP's BPE marks the last piece of every word with this suffix


@dataclass
class AttentionRecord:
    """One cross-attention layer at one denoising step: `maps[b, t]` is the (h, w) map of token t for image b."""

    layer: str
    step: int
    timestep: float
    maps: torch.Tensor  # (batch, tokens, h, w): conditional half, mean over heads, on the CPU

    @property
    def size(self) -> tuple[int, int]:
        """The (h, w) grid of this layer: coarse layers see fewer, bigger patches of the image."""
        return tuple(self.maps.shape[-2:])


@dataclass(frozen=True)
class Word:
    """A word of the prompt and the positions of its BPE pieces in the 77-token context (position 0 is
    <|startoftext|>)."""

    text: str
    positions: tuple[int, ...]


# ----------------------------------------------------------------------------------------------------------------
# Tokens and words
# ----------------------------------------------------------------------------------------------------------------


def prompt_tokens(tokenizer, prompt: str) -> list[str]:
    """The BPE pieces at each position of the text encoder's context: <|startoftext|>, the prompt, <|endoftext|>."""
    ids = tokenizer(prompt, truncation=True, max_length=tokenizer.model_max_length).input_ids
    return tokenizer.convert_ids_to_tokens(ids)


def _group_words(pieces: Sequence[str], first_position: int) -> list[Word]:
    """Merge BPE pieces into words: a word ends at the piece that carries the '</w>' suffix."""
    words, current = [], []
    for offset, piece in enumerate(pieces):
        current.append(offset + first_position)
        if piece.endswith(END_OF_WORD):
            text = "".join(pieces[p - first_position] for p in current).removesuffix(END_OF_WORD)
            words.append(Word(text, tuple(current)))
            current = []
    if current:  # a word cut in half by the 77-token limit
        words.append(Word("".join(pieces[p - first_position] for p in current), tuple(current)))
    return words


def prompt_words(tokenizer, prompt: str) -> list[Word]:
    """The words of `prompt` as the model sees them (lower case, punctuation split off), with their token positions."""
    pieces = prompt_tokens(tokenizer, prompt)[1:]  # drop <|startoftext|>
    if pieces and pieces[-1] == tokenizer.eos_token:
        pieces = pieces[:-1]
    return _group_words(pieces, first_position=1)


def _find_phrase(words: Sequence[Word], pieces: Sequence[str], query: Sequence[str]) -> list[int]:
    """Positions of every occurrence of the piece sequence `query` that starts at the start of a word."""
    starts = {w.positions[0] for w in words}
    found = []
    for start in sorted(starts):
        span = list(range(start, start + len(query)))
        if span[-1] < len(pieces) and [pieces[p] for p in span] == list(query):
            found += span
    return found


def word_positions(tokenizer, prompt: str, word: str) -> list[int]:
    """Token positions of `word` (or a phrase such as 'red hat') in the prompt's context; all occurrences together."""
    query = tokenizer.tokenize(word)
    words = prompt_words(tokenizer, prompt)
    pieces = prompt_tokens(tokenizer, prompt)
    found = _find_phrase(words, pieces, query) if query else []
    if found:
        return found
    listed = ", ".join(repr(w.text) for w in words)
    all_pieces = tokenizer.tokenize(prompt)
    if (
        query
        and any(all_pieces[i : i + len(query)] == query for i in range(len(all_pieces)))
        and len(pieces) >= tokenizer.model_max_length
    ):
        raise ValueError(
            f"{word!r} comes after the {tokenizer.model_max_length}-token limit of the text encoder, so the model "
            "never saw it and it has no attention map. Shorten the prompt or move the word forward."
        )
    raise ValueError(
        f"{word!r} is not a word of the prompt {prompt!r}.{did_you_mean(word.lower(), [w.text for w in words])} "
        f"The prompt's words, as the tokenizer splits them, are: {listed}."
    )


# ----------------------------------------------------------------------------------------------------------------
# Shapes
# ----------------------------------------------------------------------------------------------------------------


def latent_grid(sequence_length: int, latent_size: tuple[int, int]) -> tuple[int, int]:
    """The (h, w) grid of a layer with `sequence_length` pixels, for a UNet input of `latent_size` (H, W) latents.

    Each UNet level halves the latent grid, rounding up (a stride-2 convolution with padding 1), so the layer's grid
    is (ceil(H / 2^k), ceil(W / 2^k)) for the k whose product matches: no hard-coded 64x64 or 96x96."""
    height, width = latent_size
    for k in range(16):
        h, w = math.ceil(height / 2**k), math.ceil(width / 2**k)
        if h * w == sequence_length:
            return h, w
        if h * w < sequence_length:
            break
    raise ValueError(
        f"a cross-attention layer has {sequence_length} pixels, which is no downsampled grid of the "
        f"{height}x{width} latent. Was the UNet called with latents of another size inside the same trace?"
    )


# ----------------------------------------------------------------------------------------------------------------
# The recorder and the context manager
# ----------------------------------------------------------------------------------------------------------------


def cross_attention_layers(unet: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """The UNet's cross-attention modules (named `...attn2` in Stable Diffusion), by module name."""
    return {
        name: module
        for name, module in unet.named_modules()
        if hasattr(module, "set_processor") and getattr(module, "is_cross_attention", False)
    }


@torch.no_grad()
def cross_attention_probs(attn, hidden_states, encoder_hidden_states, attention_mask=None, temb=None) -> torch.Tensor:
    """softmax(Q K^T / sqrt(d)) of one attention call, shaped (batch, heads, pixels, tokens): AttnProcessor's path."""
    if attn.spatial_norm is not None:
        hidden_states = attn.spatial_norm(hidden_states, temb)
    if hidden_states.ndim == 4:  # (B, C, H, W) -> (B, H*W, C)
        hidden_states = hidden_states.flatten(2).transpose(1, 2)
    batch = hidden_states.shape[0]
    if attention_mask is not None:
        attention_mask = attn.prepare_attention_mask(attention_mask, encoder_hidden_states.shape[1], batch)
    if attn.group_norm is not None:
        hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
    if attn.norm_cross:
        encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
    query = attn.head_to_batch_dim(attn.to_q(hidden_states))  # (B*heads, pixels, head_dim)
    key = attn.head_to_batch_dim(attn.to_k(encoder_hidden_states))  # (B*heads, tokens, head_dim)
    probs = attn.get_attention_scores(query, key, attention_mask)  # (B*heads, pixels, tokens)
    return probs.unflatten(0, (batch, attn.heads))


class CrossAttentionRecorder:
    """Attention processor that records the probabilities on the side and lets the original processor do the work."""

    def __init__(self, original: Any, layer: str, trace: "CrossAttentionTrace"):
        self.original = original
        self.layer = layer
        self.trace = trace

    def __call__(
        self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs
    ):
        if encoder_hidden_states is not None:  # a cross-attention call: there is text to attend to
            self.trace._record(self.layer, attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)


@dataclass
class CrossAttentionTrace:
    """Everything recorded while the `with trace_cross_attention(...)` block ran, and the maps made from it."""

    tokenizer: Any = None
    vae_scale_factor: int = 8
    cfg: bool | None = None
    pipe: Any = None
    store_dtype: torch.dtype = torch.float16
    records: list[AttentionRecord] = field(default_factory=list)
    timesteps: list[float] = field(default_factory=list)
    latent_sizes: list[tuple[int, int]] = field(default_factory=list)
    # what the text encoder was given
    prompt_ids: list[tuple[int, ...]] = field(default_factory=list)

    # -- recording ------------------------------------------------------------------------------------------------
    def _on_text_encoder_call(self, encoder, args, kwargs) -> None:
        """Forward pre-hook on the pipeline's text encoder: note the token ids of every prompt it
        encodes."""
        ids = args[0] if args else kwargs.get("input_ids")
        if isinstance(ids, torch.Tensor) and ids.ndim == 2:
            self.prompt_ids.extend(tuple(row) for row in ids.tolist())

    def _on_unet_call(self, unet, args, kwargs) -> None:
        """Forward pre-hook on the UNet: one call is one denoising step; note its timestep and latent size."""
        sample = args[0] if args else kwargs.get("sample")
        timestep = args[1] if len(args) > 1 else kwargs.get("timestep")
        t = torch.as_tensor(timestep).flatten()
        self.timesteps.append(float(t[0]) if t.numel() else float("nan"))
        self.latent_sizes.append(tuple(sample.shape[-2:]))

    def _uses_cfg(self) -> bool:
        """Whether the batch is [uncond, cond]: as told, else as the pipeline says, else yes."""
        if self.cfg is not None:
            return self.cfg
        try:
            return bool(self.pipe.do_classifier_free_guidance)
        except AttributeError:  # a bare UNet, or the pipeline is not inside __call__
            return True

    def _record(self, layer, attn, hidden_states, encoder_hidden_states, attention_mask, temb) -> None:
        """Compute the conditional half's attention probabilities, average the heads, store them as (B, T, h, w)."""
        if not self.timesteps:
            raise RuntimeError("cross-attention ran outside a UNet call; trace the UNet that owns these layers.")
        batch = hidden_states.shape[0]
        if self._uses_cfg():
            if batch % 2:
                raise ValueError(
                    f"the UNet got a batch of {batch}, which cannot be split into [unconditional, conditional] "
                    "halves. Without classifier-free guidance, pass cfg=False to trace_cross_attention."
                )
            cond = slice(batch // 2, batch)
            hidden_states, encoder_hidden_states = hidden_states[cond], encoder_hidden_states[cond]
            if attention_mask is not None and attention_mask.shape[0] == batch:
                attention_mask = attention_mask[cond]
            if temb is not None and temb.shape[0] == batch:
                temb = temb[cond]
        probs = cross_attention_probs(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        h, w = latent_grid(probs.shape[2], self.latent_sizes[-1])
        maps = probs.mean(dim=1).transpose(1, 2).unflatten(2, (h, w))  # (B, tokens, h, w)
        step = len(self.timesteps) - 1
        self.records.append(AttentionRecord(layer, step, self.timesteps[-1], maps.to("cpu", self.store_dtype)))

    # -- what was recorded ----------------------------------------------------------------------------------------
    @property
    def layers(self) -> list[str]:
        """Names of the recorded cross-attention layers, in the order the UNet runs them."""
        return list(dict.fromkeys(r.layer for r in self.records))

    @property
    def steps(self) -> list[int]:
        """Indices of the recorded denoising steps (UNet calls): 0 is the first, noisiest one."""
        return sorted({r.step for r in self.records})

    def layers_by_size(self) -> dict[tuple[int, int], list[str]]:
        """Layer names grouped by their (h, w) grid, coarsest first."""
        groups: dict[tuple[int, int], list[str]] = {}
        for r in self.records:
            if r.layer not in groups.setdefault(r.size, []):
                groups[r.size].append(r.layer)
        return dict(sorted(groups.items(), key=lambda item: item[0][0] * item[0][1]))

    def image_size(self) -> tuple[int, int]:
        """(height, width) of the generated image: the latent size times the VAE's factor (8)."""
        self._require_records()
        h, w = self.latent_sizes[-1]
        return h * self.vae_scale_factor, w * self.vae_scale_factor

    def words(self, prompt: str) -> list[Word]:
        """The prompt's words and their token positions (needs the tokenizer: trace a pipeline or pass tokenizer=)."""
        return prompt_words(self._require_tokenizer(), prompt)

    # -- maps -------------------------------------------------------------------------------------------------------
    def select(
        self, layers: str | Iterable[str] | None = None, steps: int | slice | Iterable[int] | None = None
    ) -> list[AttentionRecord]:
        """The records of the chosen layers (names; None = all) and steps (indices, a slice or None = all)."""
        self._require_records()
        layer_names = self.layers if layers is None else [layers] if isinstance(layers, str) else list(layers)
        for name in layer_names:
            if name not in self.layers:
                raise ValueError(
                    f"layers: {name!r} is not a recorded cross-attention layer.{did_you_mean(name, self.layers)} "
                    f"See trace.layers or trace.layers_by_size() for the {len(self.layers)} names."
                )
        all_steps = self.steps
        if steps is None:
            chosen = all_steps
        elif isinstance(steps, slice):
            chosen = all_steps[steps]
        else:
            chosen = [steps] if isinstance(steps, int) else list(steps)
            for s in chosen:
                if not -len(all_steps) <= s < len(all_steps):
                    raise ValueError(f"steps: {s} is out of range; this trace has steps 0..{len(all_steps) - 1}.")
            chosen = [all_steps[s] for s in chosen]
        if not chosen or not layer_names:
            raise ValueError(f"layers={layers!r}, steps={steps!r} select nothing; trace.steps is {all_steps}.")
        wanted_layers, wanted_steps = set(layer_names), set(chosen)
        return [r for r in self.records if r.layer in wanted_layers and r.step in wanted_steps]

    def token_maps(
        self,
        index: int = 0,
        layers=None,
        steps=None,
        size: tuple[int, int] | None = None,
        tokens: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """Attention probability of every context token (or of the positions in `tokens`) at every pixel, shaped
        (tokens, H, W), averaged over the chosen layers and steps after upsampling each layer's grid to the image
        size (bilinear). Not normalised."""
        records = self.select(layers, steps)
        positions = slice(None) if tokens is None else list(tokens)
        batch = records[0].maps.shape[0]
        if not -batch <= index < batch:
            raise ValueError(f"index={index}: the traced batch holds {batch} image(s), so use 0..{batch - 1}.")
        if len({r.maps.shape[0] for r in records}) > 1:
            raise ValueError(
                "the selected records come from generations with different batch sizes; trace one generation per "
                "`with` block."
            )
        sizes = {r.size for r in records if r.layer == records[0].layer}
        if len(sizes) > 1:
            raise ValueError(
                "the selected steps come from generations of different sizes (layer "
                f"{records[0].layer} saw grids {sorted(sizes)}): trace one generation per `with` "
                "block, call trace.clear() before the next one, or choose steps= from one "
                "generation."
            )
        size = size or self.image_size()
        total, count = None, 0
        for layer in dict.fromkeys(r.layer for r in records):
            own = [r.maps[index, positions].float() for r in records if r.layer == layer]
            summed = torch.stack(own).sum(0)
            up = F.interpolate(summed[None], size=size, mode="bilinear", align_corners=False)[0]
            total = up if total is None else total + up
            count += len(own)
        return total / count

    def _require_traced_prompt(self, prompt: str) -> None:
        """Refuse a prompt the traced text encoder never saw: its token positions would index
        another prompt."""
        if not self.prompt_ids:  # a bare UNet, or prompt_embeds passed in: nothing to compare with
            return
        tokenizer = self._require_tokenizer()
        limit = tokenizer.model_max_length
        ids = tuple(tokenizer(prompt, truncation=True, max_length=limit).input_ids)
        if any(row[: len(ids)] == ids for row in self.prompt_ids):
            return
        rows = dict.fromkeys(self.prompt_ids)
        seen = [tokenizer.decode(row, skip_special_tokens=True) for row in rows]
        raise ValueError(
            f"prompt={prompt!r} is not a prompt of the traced generation (it encoded "
            f"{', '.join(repr(t) for t in seen if t) or 'only empty prompts'}). The maps are "
            "indexed by the traced prompt's tokens: pass that prompt, or generate with this one "
            "inside a new trace."
        )

    def word_map(
        self, prompt: str, word: str, index: int = 0, layers=None, steps=None, normalize: bool = True
    ) -> torch.Tensor:
        """(H, W) heat map of `word` (its BPE pieces summed; a phrase or repeated word: all occurrences summed)."""
        self._require_traced_prompt(prompt)
        positions = word_positions(self._require_tokenizer(), prompt, word)
        heat = self.token_maps(index, layers, steps, tokens=positions).sum(0)
        return normalize_map(heat) if normalize else heat

    def word_maps(
        self, prompt: str, index: int = 0, layers=None, steps=None, normalize: bool = True
    ) -> dict[str, torch.Tensor]:
        """{word: (H, W) heat map} for every word of the prompt (a repeated word appears once, occurrences summed)."""
        self._require_traced_prompt(prompt)
        words = self.words(prompt)
        positions = sorted({p for w in words for p in w.positions})
        tokens = dict(zip(positions, self.token_maps(index, layers, steps, tokens=positions)))
        maps: dict[str, torch.Tensor] = {}
        for w in words:
            heat = torch.stack([tokens[p] for p in w.positions]).sum(0)
            maps[w.text] = maps[w.text] + heat if w.text in maps else heat
        return {k: normalize_map(v) if normalize else v for k, v in maps.items()}

    def clear(self) -> None:
        """Forget what was recorded (to trace another generation in the same `with` block)."""
        self.records.clear()
        self.timesteps.clear()
        self.latent_sizes.clear()
        self.prompt_ids.clear()

    def __repr__(self) -> str:
        sizes = ", ".join(f"{h}x{w}: {len(names)}" for (h, w), names in self.layers_by_size().items())
        return (
            f"CrossAttentionTrace({len(self.records)} records = {len(self.layers)} layers x {len(self.steps)} steps; "
            f"layers per grid size: {sizes or 'none'})"
        )

    def _require_records(self) -> None:
        if not self.records:
            raise ValueError(
                "nothing was recorded: generate an image *inside* the `with trace_cross_attention(...)` block, "
                "then ask the trace for maps (after the block is fine)."
            )

    def _require_tokenizer(self):
        if self.tokenizer is None:
            raise ValueError("this trace has no tokenizer: pass tokenizer=pipe.tokenizer to trace_cross_attention.")
        return self.tokenizer


def _unet_of(model) -> tuple[torch.nn.Module, Any]:
    """(unet, pipeline or None) for a diffusers pipeline or a bare UNet."""
    if isinstance(model, torch.nn.Module):
        return model, None
    unet = getattr(model, "unet", None)
    if isinstance(unet, torch.nn.Module):
        return unet, model
    raise TypeError(
        f"trace_cross_attention needs a pipeline with a `unet` (e.g. StableDiffusionPipeline) or a UNet model, "
        f"got {type(model).__name__}."
    )


@contextlib.contextmanager
def trace_cross_attention(
    model, *, cfg: bool | None = None, tokenizer=None, store_dtype: torch.dtype = torch.float16
) -> Iterator[CrossAttentionTrace]:
    """Record the cross-attention maps of every generation run inside the block; the image stays bit-identical.

    model: a pipeline (its UNet and tokenizer are used) or a UNet. cfg: whether UNet batches are [uncond, cond];
    None asks the pipeline's current call (guidance_scale > 1), and assumes yes for a bare UNet; when you call the
    UNet yourself, say cfg=True or cfg=False. Maps are stored on the CPU in `store_dtype`."""
    unet, pipe = _unet_of(model)
    layers = cross_attention_layers(unet)
    if not layers:
        kinds = sum(1 for m in unet.modules() if hasattr(m, "set_processor"))
        raise ValueError(
            f"{type(unet).__name__} has no cross-attention layers ({kinds} attention layers, all self-attention), "
            "so there is no text to attend to and no word maps to draw. Trace a text-conditioned UNet, such as "
            "the UNet2DConditionModel of StableDiffusionPipeline.from_pretrained(course.model('sd15'))."
        )
    trace = CrossAttentionTrace(
        tokenizer=tokenizer if tokenizer is not None else getattr(pipe, "tokenizer", None),
        vae_scale_factor=getattr(pipe, "vae_scale_factor", 8),
        cfg=cfg,
        pipe=pipe,
        store_dtype=store_dtype,
    )
    originals = {name: module.get_processor() for name, module in layers.items()}
    hook = unet.register_forward_pre_hook(trace._on_unet_call, with_kwargs=True)
    encoder = getattr(pipe, "text_encoder", None)
    text_hook = (
        encoder.register_forward_pre_hook(trace._on_text_encoder_call, with_kwargs=True)
        if isinstance(encoder, torch.nn.Module)
        else None
    )
    try:
        for name, module in layers.items():
            module.set_processor(CrossAttentionRecorder(originals[name], name, trace))
        yield trace
    finally:
        hook.remove()
        if text_hook is not None:
            text_hook.remove()
        for name, module in layers.items():
            module.set_processor(originals[name])


# ----------------------------------------------------------------------------------------------------------------
# Display
# ----------------------------------------------------------------------------------------------------------------


def normalize_map(heat: torch.Tensor) -> torch.Tensor:
    """Rescale a heat map to [0, 1] (min -> 0, max -> 1); a constant map becomes all zeros."""
    heat = heat.float()
    low, high = heat.min(), heat.max()
    return (heat - low) / (high - low) if high > low else torch.zeros_like(heat)


def overlay(image: Image.Image, heat: torch.Tensor, alpha: float = 0.7, cmap: str = "viridis") -> Image.Image:
    """The heat map in colour over a light grey copy of the image (the map is resized to the image if needed).

    Grey, so that the picture's own colours never mix with the map's: a red map over a red apple would be unreadable.
    Lightened, so that dark parts of the picture do not darken the map. With the default viridis, dark purple is
    where the word hardly lands and yellow is where it lands most."""
    import matplotlib

    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha={alpha}: expected a blend weight between 0 and 1.")
    heat = torch.as_tensor(heat).float()
    if heat.ndim != 2:
        raise ValueError(f"heat map must be 2-D (H, W), got shape {tuple(heat.shape)}.")
    width, height = image.size
    if tuple(heat.shape) != (height, width):
        heat = F.interpolate(heat[None, None], size=(height, width), mode="bilinear", align_corners=False)[0, 0]
    colours = matplotlib.colormaps[cmap](normalize_map(heat).numpy())[..., :3]
    coloured = Image.fromarray((colours * 255).round().astype("uint8"))
    grey = image.convert("L").convert("RGB")
    light_grey = Image.blend(grey, Image.new("RGB", grey.size, "white"), 0.4)  # 40% of the way to white
    return Image.blend(light_grey, coloured, alpha)


def show_word_maps(
    image: Image.Image,
    maps: dict[str, torch.Tensor],
    cols: int | None = None,
    alpha: float = 0.7,
    size: float = 2.2,
    suptitle: str = "",
):
    """The image, then one overlay per word (its map over a light grey copy of the image), titled with the word."""
    from course_utils.images import show

    panels = [image] + [overlay(image, heat, alpha) for heat in maps.values()]
    titles = ["image"] + [repr(word) if not word.isalnum() else word for word in maps]
    show(panels, titles=titles, cols=cols or min(len(panels), 6), size=size, suptitle=suptitle)
