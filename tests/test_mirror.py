"""The download path end to end through a real hub mirror (olah serving the course's own models and
a flowers-like dataset offline): course.model, plain from_pretrained, `hf download`, course.dataset
and lesson 00. The checks run in fresh Pythons, since the hub libraries read HF_ENDPOINT at import; the course's
own calls share one (COURSE_CALLS)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import mirror
import pytest
from notebook_code import execute_notebook

SHIPPED = mirror.REPO_ROOT / "data" / "models"


# The course's own calls, one part after another in one Python (each new Python spends about 5 s importing torch
# and diffusers): a model download then its cache, the lesson 04 dataset call, the chain's last steps, then the first
# import of a pipeline class. Each part prints a "== part" line, and each test reads its own part.
COURSE_CALLS = """
import course_utils
from course_utils import hub_datasets
course = course_utils.setup()
assert course.hub_ok and not course.smoke
print("== model")
first = course.model("ddpm-cat")
second = course.model("ddpm-cat")
assert first == second
print("FOLDER", first)
print("== dataset")
flowers = course.dataset("flowers")
print("ROWS", len(flowers), flowers.column_names, flowers[0]["image"].size)
print("== local copy")
try:
    hub_datasets.load_image_dataset("someone/no-such-dataset", hub_ok=True)
except Exception as err:
    print("MISSING", type(err).__name__)
def refuse(*args, **kwargs):
    raise ConnectionError("mirror refused")
hub_datasets.from_hub = hub_datasets.from_snapshot = hub_datasets.from_parquet_branch = refuse
print("LOCAL", len(hub_datasets.load_image_dataset("flowers", hub_ok=True, local_dir="data/emoji")))
print("SHIPPED", len(hub_datasets.load_image_dataset("flowers", hub_ok=True, local_dir="no-such-folder")))
print("== first model class")
from diffusers import StableDiffusion3Pipeline
print(StableDiffusion3Pipeline.__name__)
"""


@pytest.fixture(scope="module")
def course_calls(olah_mirror, tmp_path_factory) -> SimpleNamespace:
    """COURSE_CALLS run once against the mirror with an empty cache: its HF_HOME, the output of each part (`parts`),
    and all it wrote to stderr."""
    hf_home = tmp_path_factory.mktemp("course-calls") / "hf"
    result = mirror.run_python(COURSE_CALLS, olah_mirror.url, hf_home)
    out = mirror.ok(result)
    parts = dict(part.split("\n", 1) for part in out.split("== ")[1:])
    return SimpleNamespace(hf_home=hf_home, parts={"setup": out.split("== ")[0], **parts}, stderr=result.stderr)


def test_course_model_downloads_through_the_mirror_then_uses_the_cache(olah_mirror, course_calls):
    hf_home, parts = course_calls.hf_home, course_calls.parts
    assert f"endpoint  : {olah_mirror.url}" in parts["setup"] and "hub       : reachable (answered" in parts["setup"]
    out = parts["model"]
    lines = [line for line in out.splitlines() if line.startswith("model 'ddpm-cat'")]
    assert len(lines) == 2 and ": downloaded ->" in lines[0] and ": hub cache ->" in lines[1], lines
    assert "downloading google/ddpm-cat-256 from " + olah_mirror.url in out
    folder = Path(out.split("FOLDER ")[1].split()[0])
    assert str(folder).startswith(str(hf_home))
    name = "diffusion_pytorch_model.safetensors"
    assert (folder / name).read_bytes() == (SHIPPED / "emoji-ddpm" / name).read_bytes()


def test_lesson_04_dataset_call_loads_flowers_through_the_mirror(olah_mirror, course_calls):
    out = course_calls.parts["dataset"]
    assert "ROWS 12 ['image'] (64, 64)" in out
    assert (
        f"1. load_dataset via {olah_mirror.url[7:]}" in out
        and " ok " in out.split("1. load_dataset")[1].splitlines()[0]
    )


def test_local_copy_and_shipped_steps_when_the_mirror_lacks_the_repo(course_calls):
    """A repo the mirror lacks stops the chain (a typo must not be hidden).

    A local copy is used when the hub steps fail for another reason, the shipped dataset last."""
    out = course_calls.parts["local copy"]
    assert "MISSING" in out and "LOCAL 1870" in out and "SHIPPED 1870" in out, out
    assert "shipped offline dataset 'emoji' INSTEAD of huggan/flowers-102-categories" in out


# The calls a learner copies from the diffusers docs, in a Python where course_utils is never imported.
PLAIN_CALLS = """
import torch
from diffusers import AutoPipelineForText2Image, DiffusionPipeline, UNet2DModel
from safetensors.torch import load_file
unet = UNet2DModel.from_pretrained("google/ddpm-cat-256")
ref = load_file("data/models/emoji-ddpm/diffusion_pytorch_model.safetensors")
assert all(torch.equal(unet.state_dict()[k], v) for k, v in ref.items())
pipe = DiffusionPipeline.from_pretrained("google/ddpm-cat-256")
print("PIPE", type(pipe).__name__)
sd = AutoPipelineForText2Image.from_pretrained("stable-diffusion-v1-5/stable-diffusion-v1-5")
ref = load_file("data/models/emoji-sd/unet/diffusion_pytorch_model.safetensors")
assert all(torch.equal(sd.unet.state_dict()[k], v) for k, v in ref.items())
print("AUTO", type(sd).__name__)
"""


@pytest.fixture(scope="module")
def plain_calls(olah_mirror, tmp_path_factory) -> subprocess.CompletedProcess:
    """PLAIN_CALLS run once against the mirror with an empty cache."""
    return mirror.run_python(PLAIN_CALLS, olah_mirror.url, tmp_path_factory.mktemp("plain-calls") / "hf")


@pytest.mark.slow
def test_plain_from_pretrained_of_each_class_works_through_the_mirror(plain_calls):
    out = mirror.ok(plain_calls)
    assert "PIPE DDPMPipeline" in out and "AUTO StableDiffusionPipeline" in out


def test_setup_keeps_the_quantizer_import_warnings_out_of_the_lessons(plain_calls, course_calls):
    """With torchao installed (lesson 10), diffusers' first import of its quantizers prints three harmless warnings.
    setup() filters exactly those messages, without importing the quantizers itself, so a lesson's first model load
    prints none. The plain calls, without setup(), show that the warnings are there to be filtered."""
    if importlib.util.find_spec("torchao") is None:
        pytest.skip("torchao is not installed: diffusers prints no quantizer warnings to filter")
    assert "Unable to import `torchao` Tensor objects" in mirror.ok(plain_calls) + plain_calls.stderr
    assert course_calls.parts["first model class"].strip() == "StableDiffusion3Pipeline"
    for text in ("Unable to import `torchao`", "register_constant()", "gemm_4bit_forward"):
        assert text not in course_calls.stderr, course_calls.stderr


def test_hf_download_with_include_fetches_only_the_matching_files(olah_mirror, tmp_path):
    hf = Path(sys.executable).parent / "hf"
    env = {"HF_ENDPOINT": olah_mirror.url, "HF_HOME": str(tmp_path / "hf"), "PATH": str(hf.parent)}
    result = subprocess.run(
        [
            str(hf),
            "download",
            "google/ddpm-cat-256",
            "--include",
            "*.json",
            "--local-dir",
            str(tmp_path / "cat"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    got = sorted(p.name for p in (tmp_path / "cat").iterdir() if p.is_file())
    assert got == ["config.json", "model_index.json", "scheduler_config.json"]
    assert json.loads((tmp_path / "cat" / "config.json").read_text()) == json.loads(
        (SHIPPED / "emoji-ddpm" / "config.json").read_text()
    )


def test_each_fallback_step_works_through_the_mirror(olah_mirror, tmp_path):
    """Steps 2-3 alone (step 1 is the test above), and the chain when step 1 is refused.

    olah serves branches only, not the hub's refs/convert/parquet: a proxy maps that revision to the
    repo's parquet branch."""
    code = """
import course_utils
from course_utils import hub_datasets
course = course_utils.setup()
repo = "huggan/flowers-102-categories"
print("STEP2", len(hub_datasets.from_snapshot(repo, "train")))
print("STEP3", len(hub_datasets.from_parquet_branch(repo, "train")))
print("CACHED", len(hub_datasets.from_snapshot(repo, "train", local_files_only=True)))
def refuse(*args, **kwargs):
    raise ConnectionError("mirror refused load_dataset")
hub_datasets.from_hub = refuse
chain = hub_datasets.load_image_dataset("flowers", hub_ok=True)
print("CHAIN", len(chain))
"""
    with mirror.faulty_mirror(olah_mirror.url, "pass") as proxy:
        out = mirror.ok(mirror.run_python(code, proxy.url, tmp_path / "hf"))
    assert any("/revision/parquet" in r for r in proxy.requests)
    for step in ("STEP2 12", "STEP3 12", "CACHED 12", "CHAIN 12"):
        assert step in out, out
    chain = out.split("CACHED 12")[1]
    assert "1. load_dataset" in chain and "failed  ConnectionError: mirror refused" in chain
    assert "2. snapshot_download" in chain.split("failed  ConnectionError")[1].splitlines()[1]


@pytest.mark.slow
def test_lesson_00_runs_against_the_mirror(olah_mirror, tmp_path):
    nb = execute_notebook("00_setup.ipynb", **mirror.hub_env(olah_mirror.url, tmp_path / "hf"))
    text = "\n".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "stream"
    )
    assert f"endpoint  : {olah_mirror.url}" in text and "hub       : reachable" in text
    assert "downloaded to " + str(tmp_path / "hf") in text
    assert "model 'ddpm-cat' (google/ddpm-cat-256): hub cache" in text


def test_olah_ignores_range_so_resume_is_tested_with_a_cutting_proxy(olah_mirror):
    """Why test_mirror_faults.py cuts downloads with a proxy: olah answers Range with 200."""
    import urllib.request

    url = f"{olah_mirror.url}/google/ddpm-cat-256/resolve/main/config.json"
    request = urllib.request.Request(url, headers={"Range": "bytes=10-"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200 and len(response.read()) == (SHIPPED / "emoji-ddpm/config.json").stat().st_size


def test_second_setup_probes_again_after_the_first_went_offline(olah_mirror, tmp_path):
    """setup() went offline for a dead endpoint; a later setup(mirror=...) must probe again."""
    code = f"""
import course_utils, socket
with socket.socket() as s:
    s.bind(("127.0.0.1", 0)); dead = f"http://127.0.0.1:{{s.getsockname()[1]}}"
first = course_utils.setup(mirror=dead)
second = course_utils.setup(mirror={olah_mirror.url!r})
print("HUB_OK", first.hub_ok, second.hub_ok)
"""
    out = mirror.ok(mirror.run_python(code, olah_mirror.url, tmp_path / "hf"))
    states = [line for line in out.splitlines() if line.startswith("  hub ")]
    assert "NOT reachable (ConnectionRefusedError" in states[0], states
    assert (
        "answers now (answered 200), but an earlier setup() already started the hub libraries "
        "in offline mode: restart the kernel" in states[1]
    ), states
    assert "you set HF_HUB_OFFLINE" not in out
