"""Store notebooks the way the course keeps them: no outputs or execution counts, a plain `python3` kernelspec,
no editor metadata. Run after editing:  python scripts/normalize_notebooks.py notebooks/*.ipynb notebooks/zh/*.ipynb"""

from __future__ import annotations

import argparse

import nbformat
from nbformat.v4.nbbase import random_cell_id

KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def normalize(path: str) -> bool:
    """Rewrite `path` in normal form; return True if it changed."""
    nb = nbformat.read(path, as_version=4)
    before = nbformat.writes(nb)
    nb.metadata = {"kernelspec": KERNELSPEC, "language_info": {"name": "python"}}
    nb.nbformat_minor = 5  # cell ids: a lesson and its Chinese twin (notebooks/zh/) match cells by id
    for cell in nb.cells:
        # tags, and the hash of the English cell a translated cell translates (scripts/sync_translations.py)
        cell.metadata = {k: v for k, v in cell.metadata.items() if k in ("tags", "translation")}
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        if not cell.get("id"):
            cell.id = random_cell_id()
    after = nbformat.writes(nb)
    if after != before:
        with open(path, "w", encoding="utf-8") as f:
            f.write(after)
    return after != before


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="+", help="the .ipynb files to rewrite, e.g. notebooks/*.ipynb")
    paths = parser.parse_args().notebooks
    changed = [p for p in paths if normalize(p)]
    print(f"normalized {len(changed)} of {len(paths)} notebooks")
