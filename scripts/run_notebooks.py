"""Execute notebooks top to bottom with nbclient (no nbconvert needed) and report each one's time, the kernel's peak
memory, the number of figures kept, and the first error.

    python scripts/run_notebooks.py notebooks/01_denoising_loop.ipynb ... --out build/executed --timeout 150

Used by scripts/gpu_check.sh, where only nbclient and ipykernel travel as wheels, and by `make rehearse`. Each
notebook runs in the notebooks/ folder, as in JupyterLab; the executed copy (with outputs) is written to --out. Exit
status 1 if any failed.
"""

from __future__ import annotations

import argparse
import re
import sys
import threading
import time
from pathlib import Path


class PeakMemory:
    """Samples the resident memory of this process's children (the kernel) twice a second; `peak` in bytes.
    0 where psutil is missing (it comes with ipykernel)."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        try:
            import psutil
        except ImportError:
            return
        me = psutil.Process()
        while not self._stop.wait(0.5):
            total = 0
            for child in me.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.Error:  # the child ended between listing and reading
                    pass
            self.peak = max(self.peak, total)

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def run(path: Path, out: Path, timeout: int) -> tuple[bool, float, int, int, str]:
    """Execute one notebook; return (ok, seconds, peak kernel memory in bytes, figures kept, what went wrong)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    start = time.perf_counter()
    problem = ""
    memory = PeakMemory()
    try:
        with memory:
            client.execute()
    except CellTimeoutError:
        problem = f"a cell ran past {timeout} s"
    except CellExecutionError as err:
        lines = [line for line in re.sub(r"\x1b\[[0-9;]*m", "", str(err)).splitlines() if line.strip()]
        problem = lines[-1] if lines else "a cell raised an error"
    except Exception as err:  # the kernel died (out of memory, say) or would not start: report it, go on to the next
        problem = f"{type(err).__name__}: {err}".splitlines()[0]
    seconds = time.perf_counter() - start
    out.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out / path.name)
    figures = sum("image/png" in output.get("data", {}) for cell in nb.cells for output in cell.get("outputs", []))
    return not problem, seconds, memory.peak, figures, problem


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path("build/executed"))
    parser.add_argument("--timeout", type=int, default=600, help="seconds one cell may take")
    args = parser.parse_args()
    failed = 0
    for path in args.notebooks:
        ok, seconds, peak, figures, problem = run(path.resolve(), args.out, args.timeout)
        failed += not ok
        print(
            f"{path.name:<44} {'ok    ' if ok else 'FAILED'} {seconds:6.1f} s  peak {peak / 2**30:5.1f} GiB  "
            f"{figures:3d} figures  {problem}",
            flush=True,
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
