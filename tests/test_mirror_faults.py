"""A mirror that fails part-way: stalls, cuts a file in the middle, or answers 5xx.

Each case ends with a clear message within a bounded time, and a cut download completes when the
call is repeated, with no .incomplete files left behind. The faults come from a proxy in front of
olah (tests/mirror.py says why)."""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import mirror
import pytest

SHIPPED = mirror.REPO_ROOT / "data" / "models"
CAT = "google/ddpm-cat-256"
pytestmark = pytest.mark.slow  # one fixture runs every scenario, about 25 s


SNAPSHOT = f"""
from huggingface_hub import snapshot_download
try:
    snapshot_download({CAT!r})
    print("DONE")
except Exception as err:
    print("FAILED", type(err).__name__)
"""

# Every scenario below runs in its own Python, each behind its own faulty proxy (name: proxy behaviour, files it cuts,
# environment, code). They run side by side, started by one fixture: most of their time is spent waiting for a mirror
# that does not answer (huggingface_hub resumes a stalled or cut file 5 times, 1 s apart). Where a test bounds a wait,
# the code measures it from inside: with eight interpreters importing torch at once, the time since a process started
# would mostly measure the imports.
SCENARIOS = {
    "stalled mirror": (
        "stall",
        0,
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
        0,
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
        0,
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
        0,
        {"HF_HUB_DOWNLOAD_TIMEOUT": "1"},
        """
import time, course_utils
course = course_utils.setup()
started = time.perf_counter()
rows = len(course.dataset("flowers"))
print("ROWS", rows, "SECONDS", round(time.perf_counter() - started))
""",
    ),
    "cut download": (
        "cut",
        1000,
        {},
        SNAPSHOT,
    ),
    "a few cuts": (
        "cut",
        2,
        {},
        """
import course_utils
course = course_utils.setup()
print("FOLDER", course.model("ddpm-cat"))
""",
    ),
    "5xx setup": ("5xx", 0, {}, "import course_utils; course_utils.setup()"),
    "5xx download": (
        "5xx",
        0,
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
    seconds = round(time.perf_counter() - started)
    print("FAILED", type(err).__name__, seconds, str(err).splitlines()[0])
""",
    ),
}


@dataclass
class Run:
    """A finished scenario: its process's result, the proxy it used (still running) and its HF_HOME."""

    result: object
    proxy: object
    hf_home: Path


@pytest.fixture(scope="module")
def runs(olah_mirror, tmp_path_factory):
    """Every SCENARIOS entry, run at once; the proxies stay up until the module ends."""
    with ExitStack() as stack:
        started = {}
        for name, (behaviour, cuts, env, code) in SCENARIOS.items():
            proxy = stack.enter_context(mirror.faulty_mirror(olah_mirror.url, behaviour, faults=cuts))
            hf_home = tmp_path_factory.mktemp("fault") / "hf"
            started[name] = (mirror.start_python(code, proxy.url, hf_home, **env), proxy, hf_home)
        yield {
            name: Run(mirror.finish_python(p, timeout=180), proxy, home) for name, (p, proxy, home) in started.items()
        }


def test_cut_download_completes_when_repeated_without_leftovers(runs):
    run = runs["cut download"]
    first = mirror.ok(run.result)
    run.proxy.faults = 0
    second = mirror.ok(mirror.run_python(SNAPSHOT, run.proxy.url, run.hf_home, timeout=120))
    assert "FAILED" in first and "DONE" in second, (first, second)
    name = "diffusion_pytorch_model.safetensors"
    got = next((run.hf_home / "hub").rglob(f"snapshots/*/{name}"))
    assert got.read_bytes() == (SHIPPED / "emoji-ddpm" / name).read_bytes()
    assert not list(run.hf_home.rglob("*.incomplete"))


def test_course_model_survives_a_few_cuts(runs):
    run = runs["a few cuts"]
    out = mirror.ok(run.result)
    assert run.proxy.faults == 0 and ": downloaded ->" in out
    name = "diffusion_pytorch_model.safetensors"
    folder = Path(out.split("FOLDER ")[1].split()[0])
    assert (folder / name).read_bytes() == (SHIPPED / "emoji-ddpm" / name).read_bytes()
    assert not list(run.hf_home.rglob("*.incomplete"))


def test_mirror_answering_5xx_is_reported_and_downloads_fail_fast(runs):
    out, failed = mirror.ok(runs["5xx setup"].result), mirror.ok(runs["5xx download"].result)
    assert "hub       : NOT reachable (answered 503 (server error)" in out
    assert "FAILED" in failed and int(failed.split("FAILED")[1].split()[1]) <= 30, failed
    assert "503" in failed


def _seconds(out: str) -> int:
    return int(out.split("SECONDS ")[1].split()[0])


def test_stalled_mirror_is_found_out_by_setup_and_the_dataset_loads_offline(runs):
    """HEAD answered, GET never: setup() says so at once, and course.dataset does not wait."""
    out = mirror.ok(runs["stalled mirror"].result)
    assert "hub       : NOT reachable (no answer to GET /api/models/google/ddpm-cat-256 within 1 s" in out
    assert "ROWS 1870" in out and "INSTEAD of huggan/flowers-102-categories" in out
    assert _seconds(out) < 20, out


def test_huggingface_hub_requests_are_bounded_when_the_mirror_stalls(runs):
    """huggingface_hub 2.x sends API calls with no timeout; bounded, they give up in seconds."""
    out = mirror.ok(runs["bounded requests"].result)
    assert "FAILED" in out, out
    assert int(out.split("FAILED")[1].split()[1]) <= 15


def test_stalled_file_download_ends_with_a_message_that_names_the_wait(runs):
    """The API answers but the file never comes: the download says what it waits for, and gives up after
    huggingface_hub's 5 resumes (about 6 x (1 s + 1 s))."""
    out = mirror.ok(runs["stalled file"].result)
    assert "waits at most 1 s for data: HF_HUB_DOWNLOAD_TIMEOUT" in out
    assert "FAILED ReadTimeout" in out and _seconds(out) < 40, out[-2000:]


def test_stalled_dataset_files_end_the_network_steps_after_one_timeout(runs):
    """The API answers but no file comes: one step times out, the other network steps skip."""
    out = mirror.ok(runs["stalled dataset files"].result)
    steps = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert "failed" in steps["1."] and "Timeout" in steps["1."], out
    for step in ("2.", "3."):
        assert "skipped not tried: an earlier step timed out" in steps[step], out
    assert "ROWS 1870" in out and _seconds(out) < 40, out
