"""`setup()`: the one call at the top of every lesson. It configures the hub before any Hugging Face import,
picks mode, device and dtype, seeds, prints what it decided, and returns a `Course` the lesson asks for
sizes, step counts, models, datasets and generators."""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from course_utils import hub
from course_utils.checks.values import (
    require_choice,
    require_positive_int,
    require_positive_number,
    require_seed,
)
from course_utils.i18n import set_lang, tr
from course_utils.progress import hide_loading_bars, quiet_quantizer_warnings

MODES = ("smoke", "full")
# Smoke mode's trained emoji models are tiny (8 x 8 latents, 32 px pixels): 20 steps cost well under a second.
SMOKE_MAX_STEPS = 20
SMOKE_MIN_SIZE = 32
# A rehearsal runs full mode's models, sizes and dtype, with every loop cut to this many steps.
REHEARSAL_STEPS = 2
# Set next to HF_HUB_OFFLINE when setup() (not the learner) turned offline mode on, so a later
# setup() probes again.
OFFLINE_MARK = "COURSE_OFFLINE_BY_SETUP"
# torch's thread count before the first setup() of this process: full mode gets it back after a smoke-mode setup().
_THREADS_BEFORE_SETUP: list[int] = []


@dataclass
class Course:
    """What setup() decided, and the questions lessons ask of it."""

    mode: str
    device: str
    dtype: Any  # torch.dtype
    endpoint: str
    cache_dir: Path
    hub_ok: bool
    seed: int = 0
    rehearsal: bool = False  # full mode with every loop capped at REHEARSAL_STEPS (COURSE_REHEARSAL=1)

    @property
    def smoke(self) -> bool:
        """True in smoke mode: the course's small emoji models, few steps, small images, fp32."""
        return self.mode == "smoke"

    def steps(self, n: int, smoke: int | None = None, rehearsal: int | None = None) -> int:
        """Number of denoising/training steps: `n` in full mode; in smoke mode `smoke` if given, else at most 20;
        in a rehearsal `rehearsal` if given, else at most 2 (never more than `n`)."""
        require_positive_int("steps", n)
        if smoke is not None:
            require_positive_int("smoke", smoke)
        if rehearsal is not None:
            require_positive_int("rehearsal", rehearsal)
        if self.rehearsal:
            return min(n, rehearsal if rehearsal is not None else REHEARSAL_STEPS)
        if not self.smoke:
            return n
        return min(n, smoke if smoke is not None else SMOKE_MAX_STEPS)

    def sweep(self, values):
        """The values of a grid or sweep: all of them, except in a rehearsal, which keeps the first and the last
        (each kind of call still runs once, at full size)."""
        values = list(values)
        if not values:
            raise ValueError("sweep() got no values: pass the list the grid runs over, e.g. [1, 3, 7.5].")
        return values[:1] + values[-1:] if self.rehearsal and len(values) > 2 else values

    def size(self, px: int) -> int:
        """Image side in pixels: `px` in full mode; px/8 (at least 32, a multiple of 8) in smoke mode."""
        require_positive_int("size", px)
        if px % 8:
            raise ValueError(
                f"size({px}): the image side must be a multiple of 8, because the VAE turns every 8x8 block of "
                f"pixels into one latent. Try size({max(8, int(px / 8 + 0.5) * 8)})."
            )
        return px if not self.smoke else max(SMOKE_MIN_SIZE, px // 8 // 8 * 8)

    def model(self, name: str) -> Path:
        """Local folder for a registry model (cache, download or stand-in); prints where it came from."""
        from course_utils.models.registry import model_spec
        from course_utils.models.resolve import resolve

        spec = model_spec(name)
        found = resolve(spec, smoke=self.smoke, hub_ok=self.hub_ok, standin_root=self.cache_dir / "course-standins")
        print(found)
        return found.path

    def dataset(self, name: str, split: str = "train", **kwargs):
        """Load an image dataset by short name, hub id or folder, with the offline fallbacks of
        course_utils.hub_datasets."""
        from course_utils.hub_datasets import load_image_dataset

        return load_image_dataset(name, split=split, hub_ok=self.hub_ok, **kwargs)

    def generator(self, seed: int | None = None):
        """A torch.Generator seeded with `seed` (default: the course seed), on the device the lesson uses."""
        import torch

        device = "cpu" if self.device == "mps" else self.device  # MPS generators are not reproducible
        seed = self.seed if seed is None else require_seed("seed", seed)
        return torch.Generator(device=device).manual_seed(seed)


def pick_device() -> str:
    """cuda if there is an NVIDIA GPU, else mps on Apple silicon, else cpu."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def unusable_gpu() -> str:
    """'' when PyTorch sees the GPU or there is none; else what is wrong and what to install. nvidia-smi can find a
    GPU that torch.cuda cannot use: the installed PyTorch's CUDA build is newer than the driver supports (a common
    case after `pip install` upgrades the torch of a server image)."""
    import shutil
    import subprocess

    import torch

    if torch.cuda.is_available() or shutil.which("nvidia-smi") is None:
        return ""
    try:
        report = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    found = re.search(r"Driver Version:\s*([\d.]+).*?CUDA Version:\s*([\d.]+)", report)
    if not found:
        return ""
    driver, driver_cuda = found.groups()
    tag = driver_cuda.replace(".", "")[:3]
    return tr(
        "nvidia-smi finds a GPU (driver {driver}, CUDA up to {driver_cuda}), but this PyTorch {torch} "
        "(built for CUDA {built}) cannot use it, so the course runs on the CPU. "
        "Install a PyTorch built for CUDA {driver_cuda} or older: take the newest cuXYZ not above cu{tag} from "
        "https://pytorch.org/get-started/locally/ and run "
        "`pip install torch torchvision --index-url https://download.pytorch.org/whl/cuXYZ`. "
        "Or update the driver. Then restart the kernel.",
        driver=driver,
        driver_cuda=driver_cuda,
        torch=torch.__version__,
        built=torch.version.cuda or tr("none: a CPU build"),
        tag=tag,
    )


def pick_dtype(device: str, mode: str):
    """The course's precision rule (training/runtime.py): bf16 on GPUs that support it, fp16 on older GPUs and MPS,
    fp32 on CPU; and fp32 always in smoke mode."""
    import torch

    from course_utils.training.runtime import best_precision, has_bf16, weight_dtype

    if mode == "smoke":
        return torch.float32
    return weight_dtype(best_precision(device, has_bf16(device)))


def pick_mode(mode: str | None, device: str) -> str:
    """COURSE_MODE (argument, then environment), else full with a GPU and smoke without."""
    mode = mode or os.environ.get("COURSE_MODE") or ("full" if device == "cuda" else "smoke")
    return require_choice("COURSE_MODE", mode.strip().lower(), MODES, "Set COURSE_MODE=smoke or COURSE_MODE=full.")


def _token_status() -> str:
    from huggingface_hub import get_token

    if os.environ.get("HF_TOKEN"):
        return tr("found in HF_TOKEN")
    if get_token():
        return tr("found (saved by `hf auth login`)")
    return tr("none (only needed for gated repos and push_to_hub)")


def _hub_state(endpoint: str, probe_timeout: float) -> tuple[bool, str]:
    """Decide once whether the hub answers; (hub_ok, what to print). Turns offline mode on when it
    does not."""
    import sys

    if hub.offline_requested() and os.environ.get(OFFLINE_MARK) != "1":
        return False, tr("NOT used: offline mode on (you set HF_HUB_OFFLINE=1)")
    os.environ.pop("HF_HUB_OFFLINE", None)  # set by an earlier setup() of this kernel: probe again
    started = time.perf_counter()
    ok, how = hub.probe(endpoint, timeout=probe_timeout)
    took = tr("probe took {seconds:.1f} s", seconds=time.perf_counter() - started)
    loaded = sys.modules.get("huggingface_hub.constants")
    if ok and loaded is not None and loaded.HF_HUB_OFFLINE:
        os.environ["HF_HUB_OFFLINE"] = "1"
        return False, tr(
            "answers now ({how}), but an earlier setup() already started the hub "
            "libraries in offline mode: restart the kernel and run this setup() first",
            how=how,
        )
    if ok:
        os.environ.pop(OFFLINE_MARK, None)
        return True, tr("reachable ({how}; {took})", how=how, took=took)
    # Libraries read this at import: they now fail at once instead of retrying for ~30 s per file.
    os.environ["HF_HUB_OFFLINE"] = os.environ[OFFLINE_MARK] = "1"
    return False, tr("NOT reachable ({how}; {took}), offline mode on", how=how, took=took)


def inline_figures() -> bool:
    """In a notebook kernel under MPLBACKEND=Agg (set by many servers and CI systems), switch matplotlib to the
    inline backend: Agg draws nothing, so plt.show() in a cell would leave no figure. True if it switched."""
    if os.environ.get("MPLBACKEND", "").strip().lower() != "agg":
        return False
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None or "IPKernelApp" not in shell.config:
        return False
    shell.run_line_magic("matplotlib", "inline")
    return True


def pick_threads(mode: str) -> str:
    """Smoke mode runs torch on one CPU thread: its models are so small that several threads mostly wait for each
    other. Full mode keeps torch's own number (also after a smoke-mode setup() in the same kernel). Returns the
    status line."""
    import torch

    if not _THREADS_BEFORE_SETUP:
        _THREADS_BEFORE_SETUP.append(torch.get_num_threads())
    if mode == "smoke":
        torch.set_num_threads(1)
        return tr("1 (smoke mode: the small models run faster on one CPU thread than on several that wait)")
    torch.set_num_threads(_THREADS_BEFORE_SETUP[0])
    return tr("{threads} (torch's default for this machine)", threads=torch.get_num_threads())


def pick_rehearsal(rehearsal: bool | None, mode: str | None) -> bool:
    """A rehearsal when asked (argument, then COURSE_REHEARSAL=1); it is a kind of full mode, so smoke refuses it."""
    if rehearsal is None:
        value = os.environ.get("COURSE_REHEARSAL", "").strip().lower()
        if value not in ("", "0", "1", "false", "true", "no", "yes"):
            raise ValueError(f"COURSE_REHEARSAL={value!r}: expected 1 (rehearse) or 0 (do not).")
        rehearsal = value in ("1", "true", "yes")
    elif not isinstance(rehearsal, bool):
        raise ValueError(f"rehearsal={rehearsal!r}: expected True or False.")
    if rehearsal and (mode or "").strip().lower() == "smoke":
        raise ValueError(
            "A rehearsal runs full mode with every loop cut to 2 steps, so it cannot be combined with smoke mode. "
            "Use mode='full' (or no mode) with rehearsal=True, or unset COURSE_REHEARSAL."
        )
    return rehearsal


def setup(
    mode: str | None = None,
    mirror: str | None = None,
    seed: int = 0,
    probe_timeout: float = 1.0,
    rehearsal: bool | None = None,
    lang: str | None = None,
) -> Course:
    """Configure the hub, pick mode/device/dtype, seed everything, print a status block, return a Course.
    `rehearsal=True` (or COURSE_REHEARSAL=1) runs full mode with every loop capped at 2 steps.
    `lang="zh"` (or COURSE_LANG=zh) prints this status block and the exercise checks' verdicts in Chinese."""
    if mode is not None:  # validate before doing anything else
        require_choice("mode", mode, MODES)
    rehearsing = pick_rehearsal(rehearsal, mode or os.environ.get("COURSE_MODE"))
    require_seed("seed", seed)
    require_positive_number("probe_timeout", probe_timeout)
    set_lang(lang)
    hub.configure_hub_env(mirror)
    endpoint = os.environ["HF_ENDPOINT"]
    hub_ok, state = _hub_state(endpoint, probe_timeout)
    hub.bound_hub_requests()

    import torch
    from accelerate.utils import set_seed
    from huggingface_hub import constants

    device = pick_device()
    gpu_problem = unusable_gpu() if device == "cpu" else ""
    chosen_mode = "full" if rehearsing else pick_mode(mode, device)
    dtype = pick_dtype(device, chosen_mode)
    threads = pick_threads(chosen_mode)
    set_seed(seed)
    hide_loading_bars()
    quiet_quantizer_warnings()
    figures_inline = inline_figures()
    course = Course(chosen_mode, device, dtype, endpoint, Path(constants.HF_HOME), hub_ok, seed, rehearsing)
    models = tr("real checkpoints") if chosen_mode == "full" else tr("the course's small models, trained on emoji")
    if rehearsing:
        models += tr("; REHEARSAL: every loop cut to {steps} steps, long grids to their ends", steps=REHEARSAL_STEPS)
    rows = [
        (tr("mode"), tr("{mode} ({models}; set COURSE_MODE to change)", mode=chosen_mode, models=models)),
        (tr("device"), device + (f" ({torch.cuda.get_device_name(0)})" if device == "cuda" else "")),
        *([(tr("WARNING"), gpu_problem)] if gpu_problem else []),
        (tr("dtype"), str(dtype).replace("torch.", "")),
        (tr("threads"), threads),
        (tr("endpoint"), endpoint),
        (tr("hub"), state),
        (tr("cache"), str(constants.HF_HUB_CACHE)),
        (tr("token"), _token_status()),
        (tr("seed"), str(seed)),
        (tr("progress"), tr("download bars on; loading-from-disk bars hidden")),
        *([(tr("figures"), tr("inline (MPLBACKEND=Agg would draw none)"))] if figures_inline else []),
    ]
    print("course_utils.setup()\n" + "\n".join(f"  {_pad(label)}: {value}" for label, value in rows))
    return course


def _pad(label: str, width: int = 10) -> str:
    """`label` padded to `width` columns; a Chinese character takes two columns in a monospaced font."""
    columns = sum(2 if "\u4e00" <= ch <= "\u9fff" else 1 for ch in label)
    return label + " " * max(0, width - columns)
