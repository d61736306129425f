"""Run a lesson's own code in tests: find a code cell by a marker it contains, and execute all of it or only some
of its definitions in a namespace the test provides. Tests that do this cannot drift from the notebook."""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def notebook_cell(notebook: str | Path, marker: str) -> str:
    """Source of the one code cell of `notebook` (a file name in notebooks/, or a path) that contains `marker`."""
    path = NOTEBOOKS / notebook if isinstance(notebook, str) else notebook
    cells = [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code" and marker in c.source]
    assert len(cells) == 1, f"expected one code cell of {path.name} containing {marker!r}, found {len(cells)}"
    return cells[0]


def run_cell(notebook: str | Path, marker: str, namespace: dict) -> dict:
    """Execute the whole cell containing `marker` in `namespace` (updated in place and returned)."""
    exec(compile(notebook_cell(notebook, marker), str(notebook), "exec"), namespace)
    return namespace


def notebook_definitions(notebook: str | Path, marker: str, names: set[str], **namespace) -> dict:
    """Run only the functions and assignments called `names` of the cell containing `marker`, in `namespace`."""
    tree = ast.parse(notebook_cell(notebook, marker))
    chosen = [
        node
        for node in tree.body
        if (isinstance(node, ast.FunctionDef) and node.name in names)
        or (isinstance(node, ast.Assign) and any(getattr(t, "id", None) in names for t in node.targets))
    ]
    found = {node.name if isinstance(node, ast.FunctionDef) else node.targets[0].id for node in chosen}
    assert found == names, f"missing in the cell with {marker!r}: {names - found}"
    exec(compile(ast.Module(body=chosen, type_ignores=[]), str(notebook), "exec"), namespace)
    return namespace


def execute_notebook(path: str | Path, **env: str):
    """Execute a whole lesson in a fresh kernel, in the notebooks/ folder, with `env` added to the environment;
    return the notebook with its outputs."""
    import os

    from nbclient import NotebookClient

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    where = {"metadata": {"path": str(path.parent)}}
    NotebookClient(nb, timeout=300, kernel_name="python3", resources=where).execute(env={**os.environ, **env})
    return nb
