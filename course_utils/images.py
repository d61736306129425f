"""Tensor <-> PIL conversion, any PIL image as RGB, latents -> image through the VAE, grids and inline display. The
conversions go through diffusers' own VaeImageProcessor, so an image made here is bit-identical to a pipeline's."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from PIL import Image


def _processor():
    from diffusers.image_processor import VaeImageProcessor

    return VaeImageProcessor(do_resize=False, do_normalize=True)


def to_rgb(image: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Any PIL image as 3-channel RGB: transparency composited on `background`, grayscale/palette/16-bit converted."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16-bit PNGs and float images: scale to 8 bits
        import numpy as np

        values = np.asarray(image, dtype=np.float32)
        scale = 255.0 if image.mode == "F" and values.max() <= 1.0 else (1 / 257 if image.mode != "F" else 1.0)
        image = Image.fromarray(np.clip(values * scale, 0, 255).astype(np.uint8), mode="L")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        image.mode in ("P", "L", "RGB") and "transparency" in image.info
    ):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")


# Copied in notebooks/01_denoising_loop.ipynb (its to_pil, the same pixels written out);
# kept equal by tests/test_lesson01.py::test_the_lessons_to_pil_is_tensor_to_pil
def tensor_to_pil(images: torch.Tensor) -> list[Image.Image]:
    """Images in [-1, 1], shaped (B, C, H, W) or (C, H, W), to a list of PIL images (as the pipelines do it)."""
    if images.ndim == 3:
        images = images.unsqueeze(0)
    if images.ndim != 4:
        raise ValueError(f"expected a (B, C, H, W) or (C, H, W) tensor, got shape {tuple(images.shape)}")
    return _processor().postprocess(images.detach().float().cpu(), output_type="pil")


def pil_to_tensor(image: Image.Image | Sequence[Image.Image]) -> torch.Tensor:
    """PIL image(s) to a float tensor in [-1, 1] shaped (B, 3, H, W)."""
    images = [image] if isinstance(image, Image.Image) else list(image)
    return _processor().preprocess([im.convert("RGB") for im in images])


@torch.no_grad()
def latents_to_pil(vae, latents: torch.Tensor) -> list[Image.Image]:
    """Undo the VAE's scaling (`vae.config.scaling_factor`), decode, and convert to PIL images."""
    decoded = vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor, return_dict=False)[0]
    return tensor_to_pil(decoded)


def load_image(path: str | Path) -> Image.Image:
    """Open an image file (or URL) as RGB, with a clear error if the path does not exist or is not
    an image. Transparency becomes white and 16-bit images are scaled to 8 bits, as in the dataset
    path (to_rgb)."""
    from diffusers.utils import load_image as diffusers_load_image

    text = str(path)
    if not text.startswith(("http://", "https://")):
        file = Path(text).expanduser()
        if not file.is_file():
            raise FileNotFoundError(
                f"Image not found: {text!r} (looked in {file.resolve().parent}). Check the path; course photos are in "
                "data/images/."
            )
        try:
            Image.open(file).verify()
        except Exception as err:
            raise ValueError(f"{text!r} exists but is not a readable image ({err}).") from err
    return diffusers_load_image(text, convert_method=to_rgb)


def image_grid(images: Sequence[Image.Image], rows: int | None = None, cols: int | None = None) -> Image.Image:
    """Paste images into one grid (diffusers' make_image_grid), choosing rows/cols and resizing as needed."""
    from diffusers.utils import make_image_grid

    images = list(images)
    if not images:
        raise ValueError("image_grid got no images.")
    if cols is None:
        cols = len(images) if rows is None else -(-len(images) // rows)
    rows = rows or -(-len(images) // cols)
    if rows * cols < len(images):
        raise ValueError(f"rows={rows} x cols={cols} holds {rows * cols} images, but {len(images)} were given.")
    size = images[0].size
    images = [im if im.size == size else im.resize(size) for im in images]
    images += [Image.new("RGB", size, "white")] * (rows * cols - len(images))
    return make_image_grid(images, rows=rows, cols=cols)


def show(images, titles: Sequence[str] | None = None, cols: int | None = None, size: float = 2.5, suptitle: str = ""):
    """Show one or more PIL images (or a [-1, 1] tensor batch) side by side with titles."""
    import matplotlib.pyplot as plt

    if isinstance(images, torch.Tensor):
        images = tensor_to_pil(images)
    images = [images] if isinstance(images, Image.Image) else list(images)
    cols = cols or len(images)
    rows = -(-len(images) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows + (0.4 if suptitle else 0)), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i < len(images):
            grey = getattr(images[i], "mode", "") == "L"  # one channel: grey, not a colour map
            ax.imshow(images[i], **(dict(cmap="gray", vmin=0, vmax=255) if grey else {}))
            if titles is not None and i < len(titles):
                ax.set_title(str(titles[i]), fontsize=9)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    display_figure(fig)


def display_figure(fig) -> None:
    """Show a matplotlib figure in the notebook as a PNG, whatever the backend (MPLBACKEND=Agg draws nothing with
    plt.show()), and close it, so the inline backend does not draw it a second time. Outside IPython: plt.show()."""
    import io

    import matplotlib.pyplot as plt

    try:
        from IPython import get_ipython
        from IPython.display import Image as PNG
        from IPython.display import display
    except ImportError:  # plain Python without IPython
        get_ipython = None
    if get_ipython is None or get_ipython() is None:
        plt.show()
        return
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight", dpi=fig.dpi)
    plt.close(fig)
    display(PNG(data=buffer.getvalue()))  # returns nothing: a returned figure would be drawn a second time
