"""Lesson 10's measurements: each technique that runs on a CPU, applied to the denoiser of emoji-sd3 (transformer) and
emoji-sd (UNet), against fp32 measured in the same run.

For each: the bytes the denoiser stores (torchao's own size helper, and the saved file where one is written), the
largest pixel difference from the fp32 picture for the same seed (0-1 units), and the time per picture as a ratio
to fp32 (fastest of --repeats runs after a warm-up; fp32 and the technique alternate, so drift hits both).

    python bench/big_models.py               # 20 steps, 3 repeats (about a minute on one core)

bitsandbytes NF4 and model/sequential offload need a CUDA GPU: on a CPU the bench prints diffusers' refusal.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from course_utils import big_models as bm  # noqa: E402
from course_utils.models.emoji import shipped_model  # noqa: E402


def arguments(argv=None) -> argparse.Namespace:
    """Steps, repeats and threads."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    return parser.parse_args(argv)


def variants(kind: str, folder: Path, tmp: Path) -> dict:
    """The pipelines to compare for one model: fp32 first, then each technique that runs on a CPU."""
    from diffusers import (
        GGUFQuantizationConfig,
        PipelineQuantizationConfig,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
        StableDiffusionPipeline,
        TorchAoConfig,
    )
    from torchao.quantization import Int8WeightOnlyConfig

    cls = StableDiffusion3Pipeline if kind == "transformer" else StableDiffusionPipeline
    load = lambda **kw: cls.from_pretrained(folder, dtype=torch.float32, **kw)  # noqa: E731
    out = {"fp32": load()}
    out["fp8 layerwise casting"] = load()
    getattr(out["fp8 layerwise casting"], kind).enable_layerwise_casting(
        storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.float32
    )
    out["bf16 layerwise casting"] = load()
    getattr(out["bf16 layerwise casting"], kind).enable_layerwise_casting(
        storage_dtype=torch.bfloat16, compute_dtype=torch.float32
    )
    int8 = PipelineQuantizationConfig(quant_mapping={kind: TorchAoConfig(Int8WeightOnlyConfig())})
    out["int8 weights (torchao)"] = load(quantization_config=int8)
    if kind == "transformer":
        path = bm.save_gguf(out["fp32"].transformer, tmp / "transformer-Q8_0.gguf")
        gguf = SD3Transformer2DModel.from_single_file(
            path,
            quantization_config=GGUFQuantizationConfig(compute_dtype=torch.float32),
            config=str(folder),
            subfolder="transformer",
            dtype=torch.float32,
        )
        out["GGUF Q8_0"] = load(transformer=gguf)
    out["group offload (block level)"] = load()
    out["group offload (block level)"].enable_group_offload(
        onload_device=torch.device("cpu"), offload_type="block_level", num_blocks_per_group=1, use_stream=False
    )
    for pipe in out.values():
        pipe.set_progress_bar_config(disable=True)
    return out


def saved_bytes(module, tmp: Path, name: str) -> int | None:
    """Bytes of the module's saved weights (torchao's tensors need safe_serialization=False); None if it cannot save."""
    folder = tmp / name.replace(" ", "_")
    try:
        module.save_pretrained(
            folder, safe_serialization=not hasattr(module, "hf_quantizer") or not module.hf_quantizer
        )
    except Exception:  # layerwise casting hooks and GGUF parameters do not save back: report the live size only
        return None
    return bm.folder_bytes(folder)


def run(args: argparse.Namespace) -> list[list[str]]:
    """Measure every variant of both models; rows of (model, technique, bytes, file bytes, max diff, time ratio)."""
    torch.set_num_threads(args.threads)
    rows = []
    for model, kind in (("emoji-sd3", "transformer"), ("emoji-sd", "unet")):
        folder = shipped_model(model)
        prompt = "red apple" if kind == "transformer" else "rocket"
        with tempfile.TemporaryDirectory() as tmp:
            pipes = variants(kind, folder, Path(tmp))

            def picture(pipe):
                return pipe(prompt, num_inference_steps=args.steps, generator=torch.Generator().manual_seed(0)).images[
                    0
                ]

            reference = picture(pipes["fp32"])
            base_bytes = bm.stored_bytes(getattr(pipes["fp32"], kind))
            for name, pipe in pipes.items():
                image = picture(pipe)
                times = {"fp32": [], name: []}
                for _ in range(args.repeats):  # alternate, so that a slow spell of the machine hits both
                    for key in times:
                        start = time.perf_counter()
                        picture(pipes[key])
                        times[key].append(time.perf_counter() - start)
                component = getattr(pipe, kind)
                size = bm.stored_bytes(component)
                saved = saved_bytes(component, Path(tmp), name) if "casting" not in name else None
                rows.append(
                    [
                        model,
                        name,
                        f"{size / 1e6:.2f} MB ({size / base_bytes:.2f})",
                        "-" if saved is None else f"{saved / 1e6:.2f} MB",
                        f"{bm.max_pixel_difference(image, reference):.3f}",
                        f"{min(times[name]) / min(times['fp32']):.2f}",
                    ]
                )
    return rows


def report(rows: list[list[str]]) -> None:
    """Print the rows as a Markdown table, then what does not run on a CPU."""
    from course_utils.memory import markdown_table

    header = ["model", "technique", "stored (ratio to fp32)", "saved file", "max pixel diff", "time / fp32"]
    print(markdown_table(header, rows))
    if not torch.cuda.is_available():
        print(
            "\nNot measured (no CUDA GPU): bitsandbytes NF4 ('No GPU found. A GPU is needed for quantization.'), "
            "enable_model_cpu_offload and enable_sequential_cpu_offload ('requires accelerator'), use_stream=True."
        )


if __name__ == "__main__":
    report(run(arguments()))
