"""Lesson 10: what runs on a CPU and what does not (torchao int8, fp8 layerwise casting, a GGUF file, group offload;
bitsandbytes and model offload refused), the stored bytes that numel x element_size cannot see, the estimates and
their formulas, the input checks' messages, the taught calls written out, and each exercise check."""

from __future__ import annotations

import importlib.util
from unittest import mock

import pytest
import torch
from notebook_code import missing_calls, notebook_path

from course_utils import big_models as bm
from course_utils import model_sizes
from course_utils.exercises import lesson10_big_models as ex
from course_utils.models.emoji import shipped_model

NOTEBOOK = notebook_path("10_big_models_small_gpus.ipynb")
pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py: one CPU thread for these tiny models
NO_CUDA = not torch.cuda.is_available()


@pytest.fixture(scope="module")
def sd_folder():
    return shipped_model("emoji-sd")


@pytest.fixture(scope="module")
def sd3_folder():
    return shipped_model("emoji-sd3")


def _unet(folder, **kwargs):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(folder, subfolder="unet", **kwargs)


def _sample(unet, seed=0):
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(1, unet.config.in_channels, 8, 8, generator=g)
    text = torch.randn(1, 77, unet.config.cross_attention_dim, generator=g)
    with torch.no_grad():
        return unet(latents, 500, encoder_hidden_states=text).sample


# ------------------------------------------------------------------------------------- what runs on a CPU
def test_torchao_int8_runs_on_cpu_and_only_its_own_helper_sees_the_int8_bytes(sd_folder):
    from diffusers import TorchAoConfig
    from torchao.quantization import Int8WeightOnlyConfig

    fp32 = _unet(sd_folder)
    int8 = _unet(sd_folder, quantization_config=TorchAoConfig(Int8WeightOnlyConfig()), dtype=torch.float32)
    plain_sum = sum(p.numel() * p.element_size() for p in int8.parameters())
    assert plain_sum == sum(p.numel() * p.element_size() for p in fp32.parameters())  # blind to int8 storage
    assert bm.stored_bytes(int8) < 0.8 * bm.stored_bytes(fp32)
    difference = (_sample(int8) - _sample(fp32)).abs().max().item()
    assert 0 < difference < 0.1 * _sample(fp32).abs().max().item()


def test_torchao_string_names_are_gone():
    from diffusers import TorchAoConfig

    with pytest.raises(TypeError, match="AOBaseConfig"):
        TorchAoConfig("int8wo")


def test_layerwise_casting_runs_on_cpu_and_stores_fp8(sd_folder):
    fp32 = _unet(sd_folder)
    cast = _unet(sd_folder)
    cast.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.float32)
    assert bm.stored_bytes(cast) < 0.3 * bm.stored_bytes(fp32)
    assert 0 < (_sample(cast) - _sample(fp32)).abs().max().item() < 1.0


def test_gguf_file_round_trip_on_cpu(sd3_folder, tmp_path):
    from diffusers import GGUFQuantizationConfig, SD3Transformer2DModel

    model = SD3Transformer2DModel.from_pretrained(sd3_folder, subfolder="transformer")
    path = bm.save_gguf(model, tmp_path / "t.gguf")
    loaded = SD3Transformer2DModel.from_single_file(
        path,
        quantization_config=GGUFQuantizationConfig(compute_dtype=torch.float32),
        config=str(sd3_folder),
        subfolder="transformer",
        dtype=torch.float32,
    )
    assert type(loaded.transformer_blocks[0].attn.to_q.weight).__name__ == "GGUFParameter"
    assert path.stat().st_size < 0.35 * bm.stored_bytes(model) and bm.folder_bytes(tmp_path) == path.stat().st_size
    with pytest.raises(ValueError, match="Q8_0"):
        bm.save_gguf(model, tmp_path / "x.gguf", quant="Q2_K")


def test_group_offload_runs_on_cpu_without_streams(sd_folder):
    fp32 = _unet(sd_folder)
    reference = _sample(fp32)
    fp32.enable_group_offload(
        onload_device=torch.device("cpu"), offload_type="block_level", num_blocks_per_group=1, use_stream=False
    )
    assert torch.equal(_sample(fp32), reference)


@pytest.mark.skipif(not NO_CUDA, reason="checks the CPU refusal")
def test_gpu_only_paths_are_refused_on_cpu(sd3_folder):
    """bitsandbytes is the optional [gpu] extra: without it the course's check names the package to install; with
    it, diffusers itself refuses to quantize on a CPU. Model offload needs an accelerator either way."""
    from diffusers import PipelineQuantizationConfig, StableDiffusion3Pipeline

    if importlib.util.find_spec("bitsandbytes") is None:
        with pytest.raises(ImportError, match="pip install bitsandbytes"):
            bm.check_backend("bitsandbytes_4bit")
    else:
        nf4 = PipelineQuantizationConfig(
            quant_backend="bitsandbytes_4bit",
            quant_kwargs={"load_in_4bit": True, "bnb_4bit_quant_type": "nf4"},
            components_to_quantize=["transformer"],
        )
        with pytest.raises(RuntimeError, match="No GPU found"):
            StableDiffusion3Pipeline.from_pretrained(sd3_folder, quantization_config=nf4)
    with pytest.raises(RuntimeError, match="requires accelerator"):
        StableDiffusion3Pipeline.from_pretrained(sd3_folder).enable_model_cpu_offload()


# ----------------------------------------------------------------------------------------------- measuring
def test_max_pixel_difference_in_0_1_units():
    import numpy as np
    from PIL import Image

    a, b = Image.new("RGB", (4, 4), (0, 0, 0)), Image.new("RGB", (4, 4), (255, 0, 0))
    assert (
        bm.max_pixel_difference(a, b) == 1.0 and bm.max_pixel_difference(np.zeros((2, 2)), np.full((2, 2), 0.5)) == 0.5
    )
    with pytest.raises(ValueError, match="same size"):
        bm.max_pixel_difference(np.zeros((2, 2)), np.zeros((3, 3)))


def test_timed_warms_up_then_keeps_the_fastest():
    calls = []
    result, seconds = bm.timed(lambda: calls.append(1) or len(calls), repeats=2)
    assert result == 1 and len(calls) == 3 and seconds >= 0


# ---------------------------------------------------------------------------------------------- estimates
def test_estimates_follow_their_formulas():
    flux = bm.activation_gb("flux-dev", 1024)
    width = 24 * 128
    assert flux["denoiser"] == pytest.approx((64 * 64 + 512) * width * 2 * 12 / 1e9)
    assert flux["vae_decode"] == pytest.approx(6 * 128 * 1024 * 1024 * 2 / 1e9)
    weights = sum(model_sizes.weight_bytes("flux-dev").values()) / 1e9
    assert bm.need_gb("flux-dev", "bf16, all on the GPU") == pytest.approx(weights + flux["vae_decode"] + 1.0)
    order = [bm.need_gb("flux-dev", t) for t in ("bf16, all on the GPU", "int8 (torchao)", "NF4 (bitsandbytes)")]
    assert order == sorted(order, reverse=True)
    with pytest.raises(ValueError, match="unknown"):
        bm.need_gb("flux-dev", "magic")


def test_fits_table_says_flux_needs_a_big_card_in_bf16():
    rows = {(r[0], r[1]): r[3] for r in bm.fits_table(["flux-dev", "sd35-medium"])}
    assert rows[("flux-dev", "bf16, all on the GPU")] == "80 GB"
    assert rows[("flux-dev", "int8 (torchao)")] == "24 GB"
    assert rows[("sd35-medium", "bf16, all on the GPU")] == "24 GB"


# ------------------------------------------------------------------------------------------- input checks
def test_missing_backend_names_the_package_to_install():
    with mock.patch.object(importlib.util, "find_spec", return_value=None):
        with pytest.raises(ImportError, match=r"pip install torchao"):
            bm.check_backend("torchao")
        with pytest.raises(ImportError, match=r"bitsandbytes.*\[gpu\]"):
            bm.check_backend("bitsandbytes_4bit")
    with pytest.raises(ValueError, match="unknown"):
        bm.check_backend("int4")


@pytest.mark.skipif(not NO_CUDA, reason="checks the CPU refusal")
def test_bitsandbytes_without_gpu_says_what_to_use_instead():
    with mock.patch.object(importlib.util, "find_spec", return_value=object()):
        with pytest.raises(RuntimeError, match="CUDA GPU only.*torchao"):
            bm.check_backend("bitsandbytes_4bit")


def test_component_the_pipeline_lacks_lists_the_real_ones(sd3_folder):
    from diffusers import PipelineQuantizationConfig, TorchAoConfig
    from torchao.quantization import Int8WeightOnlyConfig

    config = PipelineQuantizationConfig(quant_mapping={"unet": TorchAoConfig(Int8WeightOnlyConfig())})
    with pytest.raises(ValueError, match="no component 'unet'.*transformer"):
        bm.check_quantization(sd3_folder, config)
    good = PipelineQuantizationConfig(quant_mapping={"transformer": TorchAoConfig(Int8WeightOnlyConfig())})
    assert bm.check_quantization(sd3_folder, good) is good


@pytest.mark.skipif(not NO_CUDA, reason="checks the CPU refusal")
def test_group_offload_to_a_missing_gpu_is_a_clear_error():
    with pytest.raises(RuntimeError, match="no CUDA GPU.*onload_device='cpu'"):
        bm.check_group_offload("cuda")
    with pytest.raises(ValueError, match="use_stream=False"):
        bm.check_group_offload("cpu", use_stream=True)
    bm.check_group_offload("cpu")


# ----------------------------------------------------------------------------------------------- notebook
def test_the_taught_calls_are_written_out_in_the_notebook():
    calls = [
        "enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=course.dtype)",
        'PipelineQuantizationConfig(quant_mapping={"transformer": TorchAoConfig(Int8WeightOnlyConfig())})',
        "quantization_config=int8",
        'quant_backend="bitsandbytes_4bit"',
        '"bnb_4bit_quant_type": "nf4"',
        "GGUFQuantizationConfig(compute_dtype=course.dtype)",
        "SD3Transformer2DModel.from_single_file(",
        ".enable_model_cpu_offload()",
        "pipe_group.enable_group_offload(",
        "use_stream=use_stream",
        "pipe.vae.enable_tiling()",
        'measure(lambda: generate(candidate), "cuda")',
    ]
    assert not missing_calls(NOTEBOOK, calls)


# ---------------------------------------------------------------------------------------------- exercises
def _out(capsys) -> str:
    return capsys.readouterr().out


def test_check_weight_gb(capsys):
    assert ex.check_weight_gb(lambda n, bits: n * bits / 8 / 1e9) and "✅" in _out(capsys)
    assert not ex.check_weight_gb(lambda n, bits: n * bits / 1e9) and "divide by 8" in _out(capsys)
    assert not ex.check_weight_gb(lambda n, bits: n * bits / 8 / 2**30) and "GiB" in _out(capsys)
    assert not ex.check_weight_gb(lambda n, bits: n * bits / 8) and "1e9" in _out(capsys)
    assert not ex.check_weight_gb(lambda n, bits: 1 / 0) and "ZeroDivisionError" in _out(capsys)
    assert not ex.check_weight_gb(None) and "Not attempted" in _out(capsys)


def test_check_quant_config(capsys, sd3_folder):
    from diffusers import PipelineQuantizationConfig, TorchAoConfig
    from torchao.quantization import Int8WeightOnlyConfig

    def mapping(*names):
        return PipelineQuantizationConfig(quant_mapping={n: TorchAoConfig(Int8WeightOnlyConfig()) for n in names})

    assert ex.check_quant_config(mapping("transformer", "text_encoder_3"), sd3_folder) and "✅" in _out(capsys)
    assert not ex.check_quant_config(mapping("transformer", "t5"), sd3_folder) and "no such component" in _out(capsys)
    assert not ex.check_quant_config(mapping("transformer", "text_encoder_2"), sd3_folder)
    assert "T5 is text_encoder_3" in _out(capsys)
    assert not ex.check_quant_config(mapping("transformer"), sd3_folder) and "expected" in _out(capsys)
    assert not ex.check_quant_config({"transformer": 1}, sd3_folder) and "PipelineQuantizationConfig" in _out(capsys)
    assert not ex.check_quant_config(None, sd3_folder) and "Not attempted" in _out(capsys)


def test_check_layerwise_casting(capsys, sd_folder):
    from types import SimpleNamespace

    right = SimpleNamespace(unet=_unet(sd_folder))
    right.unet.enable_layerwise_casting(storage_dtype=torch.bfloat16, compute_dtype=torch.float32)
    assert ex.check_layerwise_casting(right, torch.float32) and "✅" in _out(capsys)
    assert not ex.check_layerwise_casting(right, torch.bfloat16) and "compute dtype" in _out(capsys)
    whole = SimpleNamespace(unet=_unet(sd_folder).to(torch.bfloat16))
    assert not ex.check_layerwise_casting(whole, torch.float32) and "casts everything" in _out(capsys)
    fp8 = SimpleNamespace(unet=_unet(sd_folder))
    fp8.unet.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.float32)
    assert not ex.check_layerwise_casting(fp8, torch.float32) and "bfloat16" in _out(capsys)
    assert not ex.check_layerwise_casting(None, torch.float32) and "Not attempted" in _out(capsys)
