"""A mirror that fails part-way: stalls, cuts a file in the middle, or answers 5xx.

Each case ends with a clear message within a bounded time, and a cut download completes when the
call is repeated, with no .incomplete files left behind. The faults come from a proxy in front of
olah (tests/mirror.py says why)."""

from __future__ import annotations

from pathlib import Path

import mirror
import pytest

SHIPPED = mirror.REPO_ROOT / "data" / "models"
CAT = "google/ddpm-cat-256"


def _ok(result) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def test_cut_download_completes_when_repeated_without_leftovers(olah_mirror, tmp_path):
    code = f"""
from huggingface_hub import snapshot_download
try:
    snapshot_download({CAT!r})
    print("DONE")
except Exception as err:
    print("FAILED", type(err).__name__)
"""
    hf_home = tmp_path / "hf"
    with mirror.faulty_mirror(olah_mirror.url, "cut", faults=1000) as proxy:
        first = _ok(mirror.run_python(code, proxy.url, hf_home, timeout=120))
        proxy.faults = 0
        second = _ok(mirror.run_python(code, proxy.url, hf_home, timeout=120))
    assert "FAILED" in first and "DONE" in second, (first, second)
    name = "diffusion_pytorch_model.safetensors"
    got = next((hf_home / "hub").rglob(f"snapshots/*/{name}"))
    assert got.read_bytes() == (SHIPPED / "emoji-ddpm" / name).read_bytes()
    assert not list(hf_home.rglob("*.incomplete"))


@pytest.mark.slow
def test_course_model_survives_a_few_cuts(olah_mirror, tmp_path):
    code = """
import course_utils
course = course_utils.setup()
print("FOLDER", course.model("ddpm-cat"))
"""
    with mirror.faulty_mirror(olah_mirror.url, "cut", faults=2) as proxy:
        out = _ok(mirror.run_python(code, proxy.url, tmp_path / "hf", timeout=120))
    assert proxy.faults == 0 and ": downloaded ->" in out
    name = "diffusion_pytorch_model.safetensors"
    folder = Path(out.split("FOLDER ")[1].split()[0])
    assert (folder / name).read_bytes() == (SHIPPED / "emoji-ddpm" / name).read_bytes()
    assert not list((tmp_path / "hf").rglob("*.incomplete"))


def test_mirror_answering_5xx_is_reported_and_downloads_fail_fast(olah_mirror, tmp_path):
    download = f"""
import time
from course_utils import hub
hub.bound_hub_requests()
from huggingface_hub import snapshot_download
started = time.perf_counter()
try:
    snapshot_download({CAT!r})
except Exception as err:
    seconds = round(time.perf_counter() - started)
    print("FAILED", type(err).__name__, seconds, str(err).splitlines()[0])
"""
    with mirror.faulty_mirror(olah_mirror.url, "5xx") as proxy:
        out = _ok(mirror.run_python("import course_utils; course_utils.setup()", proxy.url, tmp_path / "hf"))
        failed = _ok(mirror.run_python(download, proxy.url, tmp_path / "hf", timeout=90))
    assert "hub       : NOT reachable (answered 503 (server error)" in out
    assert "FAILED" in failed and int(failed.split("FAILED")[1].split()[1]) <= 30, failed
    assert "503" in failed


# The stall scenarios spend most of their time waiting for a mirror that never answers (huggingface_hub resumes a
# stalled file 5 times, 1 s apart), so they run side by side, each in its own Python, started by one fixture. Each
# prints how long its call took, measured from inside: with four interpreters importing torch at once, the time since
# the process started would mostly measure the imports.
STALLS = {
    "stalled mirror": (
        "stall",
        {"COURSE_MODE": "smoke"},
        """
import time, course_utils
course = course_utils.setup()
started = time.perf_counter()
flowers = course.dataset("flowers")
print("ROWS", len(flowers), "SECONDS", round(time.perf_counter() - started))
""",
    ),
    "bounded requests": (
        "stall",
        {},
        f"""
import time
from course_utils import hub
hub.bound_hub_requests()
from huggingface_hub import snapshot_download
started = time.perf_counter()
try:
    snapshot_download({CAT!r})
except Exception as err:
    print("FAILED", type(err).__name__, round(time.perf_counter() - started))
""",
    ),
    "stalled file": (
        "stall-files",
        {"HF_HUB_DOWNLOAD_TIMEOUT": "1"},
        """
import time, course_utils
from course_utils.models.resolve import download
from course_utils.models.registry import model_spec
course = course_utils.setup()
started = time.perf_counter()
try:
    download(model_spec("ddpm-cat"))  # course.model calls this; a timeout is not tried again
except Exception as err:
    print("FAILED", type(err).__name__, "SECONDS", round(time.perf_counter() - started))
""",
    ),
    "stalled dataset files": (
        "stall-files",
        {"HF_HUB_DOWNLOAD_TIMEOUT": "1"},
        """
import time, course_utils
course = course_utils.setup()
started = time.perf_counter()
rows = len(course.dataset("flowers"))
print("ROWS", rows, "SECONDS", round(time.perf_counter() - started))
""",
    ),
}


@pytest.fixture(scope="module")
def stalls(olah_mirror, tmp_path_factory) -> dict:
    """Each STALLS scenario's finished process, run against a proxy that stalls every GET ("stall") or only the files
    ("stall-files"); all four run at once."""
    with (
        mirror.faulty_mirror(olah_mirror.url, "stall") as stall,
        mirror.faulty_mirror(olah_mirror.url, "stall-files") as stall_files,
    ):
        proxies = {"stall": stall, "stall-files": stall_files}
        started = {
            name: mirror.start_python(code, proxies[kind].url, tmp_path_factory.mktemp("stall") / "hf", **env)
            for name, (kind, env, code) in STALLS.items()
        }
        return {name: mirror.finish_python(process, timeout=180) for name, process in started.items()}


def _seconds(out: str) -> int:
    return int(out.split("SECONDS ")[1].split()[0])


@pytest.mark.slow
def test_stalled_mirror_is_found_out_by_setup_and_the_dataset_loads_offline(stalls):
    """HEAD answered, GET never: setup() says so at once, and course.dataset does not wait."""
    out = _ok(stalls["stalled mirror"])
    assert "hub       : NOT reachable (no answer to GET /api/models/google/ddpm-cat-256 within 1 s" in out
    assert "ROWS 1870" in out and "INSTEAD of huggan/flowers-102-categories" in out
    assert _seconds(out) < 20, out


@pytest.mark.slow
def test_huggingface_hub_requests_are_bounded_when_the_mirror_stalls(stalls):
    """huggingface_hub 2.x sends API calls with no timeout; bounded, they give up in seconds."""
    out = _ok(stalls["bounded requests"])
    assert "FAILED" in out, out
    assert int(out.split("FAILED")[1].split()[1]) <= 15


@pytest.mark.slow
def test_stalled_file_download_ends_with_a_message_that_names_the_wait(stalls):
    """The API answers but the file never comes: the download says what it waits for, and gives up after
    huggingface_hub's 5 resumes (about 6 x (1 s + 1 s))."""
    out = _ok(stalls["stalled file"])
    assert "waits at most 1 s for data: HF_HUB_DOWNLOAD_TIMEOUT" in out
    assert "FAILED ReadTimeout" in out and _seconds(out) < 40, out[-2000:]


@pytest.mark.slow
def test_stalled_dataset_files_end_the_network_steps_after_one_timeout(stalls):
    """The API answers but no file comes: one step times out, the other network steps skip."""
    out = _ok(stalls["stalled dataset files"])
    steps = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert "failed" in steps["1."] and "Timeout" in steps["1."], out
    for step in ("2.", "3."):
        assert "skipped not tried: an earlier step timed out" in steps[step], out
    assert "ROWS 1870" in out and _seconds(out) < 40, out
