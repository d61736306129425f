"""Lesson 10's measuring tools and input checks for big models on small GPUs: the bytes a component really stores
(int8 and GGUF storage included), the largest pixel difference, times, the memory estimates of full-size models, a
GGUF writer (the course cannot download one offline), and errors that say what to do before diffusers fails."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path
from typing import Any, Callable

from course_utils import model_sizes

GB = model_sizes.GB
# The package each quantization backend needs, by the names PipelineQuantizationConfig and the config classes use.
BACKEND_PACKAGES = {
    "torchao": "torchao",
    "bitsandbytes_4bit": "bitsandbytes",
    "bitsandbytes_8bit": "bitsandbytes",
    "gguf": "gguf",
    "quanto": "optimum-quanto",
}
_CONFIG_BACKENDS = {
    "TorchAoConfig": "torchao",
    "BitsAndBytesConfig": "bitsandbytes_4bit",
    "GGUFQuantizationConfig": "gguf",
    "QuantoConfig": "quanto",
}
_IMPORT_NAMES = {"optimum-quanto": "optimum.quanto"}
# Bits per weight of each storage, with the scales the format keeps beside the weights.
BITS = {"bf16": 16, "fp8": 8, "int8": 8, "nf4": 4.5}  # NF4: 4 bits + one fp32 scale per 64 weights
CARDS_GB = (8, 12, 16, 24, 80)
CUDA_CONTEXT_GB = 1.0  # the CUDA context and PyTorch's caches, on top of weights and activations


# ------------------------------------------------------------------------------------------------------ measuring
def stored_bytes(module) -> int:
    """Bytes a module's weights take as stored: torchao's int8 tensors and GGUF blocks count at their real size."""
    try:
        from torchao.utils import get_model_size_in_bytes
    except ImportError:  # without torchao there are no torchao tensors: plain element sizes are right
        seen = {id(t): t for t in (*module.parameters(), *module.buffers())}
        return sum(t.numel() * t.element_size() for t in seen.values())
    return int(get_model_size_in_bytes(module))


def folder_bytes(folder: str | Path) -> int:
    """Bytes of the weight files in a folder (what save_pretrained wrote): a second way to measure stored size."""
    files = [p for p in Path(folder).rglob("*") if p.suffix in {".safetensors", ".bin", ".gguf", ".pt"}]
    return sum(p.stat().st_size for p in files)


def max_pixel_difference(image, reference) -> float:
    """Largest absolute difference of two pictures (PIL or arrays in 0-1), in 0-1 units."""
    import numpy as np

    def as_array(x):
        x = np.asarray(x, dtype=np.float32)
        return x / 255.0 if x.max() > 1.0 else x

    a, b = as_array(image), as_array(reference)
    if a.shape != b.shape:
        raise ValueError(f"the pictures differ in shape: {a.shape} and {b.shape}; generate both at the same size.")
    return float(np.abs(a - b).max())


def timed(run: Callable[[], Any], repeats: int = 1) -> tuple[Any, float]:
    """run() once to warm up, then `repeats` timed runs: (the first result, the fastest run's seconds)."""
    result = run()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return result, best


# --------------------------------------------------------------------------------------------------------- GGUF
def save_gguf(module, path: str | Path, quant: str = "Q8_0") -> Path:
    """Write a module's state dict as a GGUF file, 2-D weights quantized (Q8_0 or Q4_0), the rest as float32."""
    import gguf
    import numpy as np

    qtype = getattr(gguf.GGMLQuantizationType, quant, None)
    if quant not in ("Q8_0", "Q4_0") or qtype is None:
        raise ValueError(f"quant={quant!r}: this writer knows 'Q8_0' (8 bits) and 'Q4_0' (4 bits).")
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    path = Path(path)
    writer = gguf.GGUFWriter(str(path), arch="course")
    for name, tensor in module.state_dict().items():
        array = tensor.detach().float().cpu().numpy()
        if array.ndim == 2 and array.shape[-1] % block == 0:
            writer.add_tensor(name, gguf.quants.quantize(array, qtype), raw_dtype=qtype)
        else:  # biases, norms and convolutions stay in float32, as GGUF exporters do
            writer.add_tensor(name, array.astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


# ------------------------------------------------------------------------------------------------- input checks
def check_backend(backend: str) -> str:
    """The backend's package must be installed (and bitsandbytes needs a CUDA GPU in diffusers): say what to do."""
    if backend not in BACKEND_PACKAGES:
        raise ValueError(f"quantization backend {backend!r} is unknown: choose one of {sorted(BACKEND_PACKAGES)}.")
    package = BACKEND_PACKAGES[backend]
    if importlib.util.find_spec(_IMPORT_NAMES.get(package, package).split(".")[0]) is None:
        extra = ' (or pip install -e ".[gpu]" in this course)' if package == "bitsandbytes" else ""
        raise ImportError(
            f"the quantization backend {backend!r} needs the package {package!r}, which is not installed. "
            f"Run: pip install {package}{extra}, then restart the kernel."
        )
    if package == "bitsandbytes":
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError(
                f"{backend!r} quantizes on a CUDA GPU only: diffusers refuses with 'No GPU found. A GPU is needed "
                "for quantization.' On a CPU, use torchao (TorchAoConfig(Int8WeightOnlyConfig())) or a GGUF file."
            )
    return backend


def pipeline_components(folder: str | Path) -> list[str]:
    """The component names a pipeline folder's model_index.json lists (those that are not None)."""
    index = json.loads((Path(folder) / "model_index.json").read_text())
    return [k for k, v in index.items() if not k.startswith("_") and isinstance(v, list) and v[0]]


def check_components(folder: str | Path, names) -> list[str]:
    """Every name must be a component of the pipeline in `folder`; else an error that lists the real ones."""
    real = pipeline_components(folder)
    missing = [n for n in names if n not in real]
    if missing:
        raise ValueError(
            f"the pipeline in {Path(folder).name!r} has no component {', '.join(map(repr, missing))}. "
            f"Its components are: {', '.join(real)}. (diffusers itself would only log a warning and quantize nothing.)"
        )
    return list(names)


def check_quantization(folder: str | Path, config) -> Any:
    """Check a PipelineQuantizationConfig against a pipeline folder before loading: backend installed, names real."""
    if config.quant_mapping:
        names = list(config.quant_mapping)
        for component_config in config.quant_mapping.values():
            backend = _CONFIG_BACKENDS.get(type(component_config).__name__)
            if backend:
                check_backend(backend)
    else:
        names = list(config.components_to_quantize or [])
        check_backend(config.quant_backend)
    check_components(folder, names)
    return config


def check_group_offload(onload_device, use_stream: bool = False) -> None:
    """Group offloading moves weights to `onload_device`: say plainly when that device is missing or has no streams."""
    import torch

    device = torch.device(onload_device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"onload_device={str(onload_device)!r}, but this machine has no CUDA GPU. On a CPU, group offloading "
            "has nowhere to move weights to: pass onload_device='cpu' (and use_stream=False) to try the API."
        )
    if use_stream and device.type == "cpu":
        raise ValueError(
            "use_stream=True overlaps copies to the GPU with compute, using CUDA streams: a CPU has none. "
            "Pass use_stream=False here, or run on a GPU."
        )


# -------------------------------------------------------------------------------------------- estimates (no GPU)
def _denoiser(model: str) -> str:
    return "unet" if "unet" in model_sizes.MODELS[model]["components"] else "transformer"


def activation_gb(model: str, px: int) -> dict[str, float]:
    """Estimated activation peaks (GB, 16-bit) of the denoiser and the VAE decode at px x px; see the formulas."""
    # VAE decode: about 6 tensors of 128 channels x H x W in 16-bit live at once at full resolution.
    vae = 6 * 128 * px * px * 2 / GB
    if _denoiser(model) == "unet":  # SD 1.5 / SDXL: lesson 03's rule of thumb, 0.27 GB at 512 px with CFG
        return {"denoiser": 0.27 * (px / 512) ** 2 * (1 if model == "sd15" else 1.5), "vae_decode": vae}
    config = model_sizes.load_config(model, "transformer")
    width = config["num_attention_heads"] * config["attention_head_dim"]
    text = 512 if model.startswith("flux") else 77 + 256
    tokens = (px // 16) ** 2 + text  # VAE /8, then 2 x 2 patches
    batch = 1 if model.startswith("flux") else 2  # FLUX.1 is guidance-distilled: one pass; SD3 runs CFG, two
    # A block keeps about 12 tensors of tokens x width at its peak (q, k, v, attention out, 4x MLP, residuals).
    return {"denoiser": batch * tokens * width * 2 * 12 / GB, "vae_decode": vae}


def need_gb(model: str, technique: str, px: int = 1024) -> float:
    """Estimated GPU memory (GB) to generate at px with one technique: weights + largest activation + context."""
    if technique not in TECHNIQUES:
        raise ValueError(f"technique {technique!r} is unknown: choose one of {TECHNIQUES}.")
    weights = {k: v / GB for k, v in model_sizes.weight_bytes(model).items()}
    den = _denoiser(model)
    t5 = next((k for k, v in model_sizes.MODELS[model]["components"].items() if v == "T5EncoderModel"), None)
    activations = max(activation_gb(model, px).values()) + CUDA_CONTEXT_GB
    scaled = dict(weights)
    if technique == "fp8 layerwise casting":
        scaled[den] *= BITS["fp8"] / 16
    elif technique in ("int8 (torchao)", "NF4 (bitsandbytes)", "NF4 + model offload"):
        bits = BITS["int8"] if technique.startswith("int8") else BITS["nf4"]
        for name in (den, t5):
            if name:
                scaled[name] *= bits / 16
    if technique in ("model CPU offload", "NF4 + model offload"):
        return max(scaled.values()) + activations
    if technique == "group offload (leaf level)":
        return 0.5 + activations  # one layer at a time; 0.5 GB covers the largest layer of these models
    return sum(scaled.values()) + activations


TECHNIQUES = (
    "bf16, all on the GPU",
    "fp8 layerwise casting",
    "int8 (torchao)",
    "NF4 (bitsandbytes)",
    "model CPU offload",
    "NF4 + model offload",
    "group offload (leaf level)",
)


def fits_table(models, px: int = 1024, cards=CARDS_GB) -> list[list[str]]:
    """Rows of (model, technique, estimated GB, the smallest card of `cards` that holds it)."""
    rows = []
    for model in models:
        for technique in TECHNIQUES:
            need = need_gb(model, technique, px)
            smallest = next((f"{c} GB" for c in cards if need <= c), "none")
            rows.append([model, technique, f"{need:.1f}", smallest])
    return rows
