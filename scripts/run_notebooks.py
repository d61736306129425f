"""Execute notebooks top to bottom with nbclient (no nbconvert needed) and report each one's time and first error.

    python scripts/run_notebooks.py notebooks/01_denoising_loop.ipynb ... --out build/executed --timeout 150

Used by scripts/gpu_check.sh, where only nbclient and ipykernel travel as wheels. Each notebook runs in the
notebooks/ folder, as in JupyterLab; the executed copy (with outputs) is written to --out. Exit status 1 if any failed.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path


def run(path: Path, out: Path, timeout: int) -> tuple[bool, float, str]:
    """Execute one notebook; return (ok, seconds, what went wrong)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    start = time.perf_counter()
    problem = ""
    try:
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
    return not problem, seconds, problem


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path("build/executed"))
    parser.add_argument("--timeout", type=int, default=600, help="seconds one cell may take")
    args = parser.parse_args()
    failed = 0
    for path in args.notebooks:
        ok, seconds, problem = run(path.resolve(), args.out, args.timeout)
        failed += not ok
        print(f"{path.name:<44} {'ok    ' if ok else 'FAILED'} {seconds:6.1f} s  {problem}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
