"""Write every figure of an executed notebook to PNG files, named by cell and order, so they can be looked at one by
one (for a review of what each figure shows):

    python scripts/run_notebooks.py notebooks/01_denoising_loop.ipynb --out build/executed
    python scripts/notebook_figures.py build/executed/01_denoising_loop.ipynb --out build/figures

Prints one line per figure: the file, the cell number and the first line of the markdown cell before it.
"""

from __future__ import annotations

import argparse
import base64
import sys
from pathlib import Path


def figures(path: Path, out: Path) -> list[tuple[Path, int, str]]:
    """Save the PNG outputs of `path` under out/<notebook stem>/; return (file, cell index, context) for each."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    folder = out / path.stem
    folder.mkdir(parents=True, exist_ok=True)
    found, context = [], ""
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            context = next((line.strip("# ") for line in cell.source.splitlines() if line.strip()), "")
            continue
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "image/png" in data:
                file = folder / f"cell{index:03d}_{len(found):02d}.png"
                file.write_bytes(base64.b64decode(data["image/png"]))
                found.append((file, index, context))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path("build/figures"))
    args = parser.parse_args()
    for path in args.notebooks:
        found = figures(path, args.out)
        print(f"{path.name}: {len(found)} figures")
        for file, index, context in found:
            print(f"  {file}  cell {index}  after: {context[:90]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
