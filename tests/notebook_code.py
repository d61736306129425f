"""A lesson's cells in tests: find a notebook by its file name, read its code cells, find the one code cell that
contains a marker, and execute all of it or only some of its definitions in a namespace the test provides. Tests that
do this cannot drift from the notebook. Every test that reads a lesson reads it through this module."""

from __future__ import annotations

import ast
import functools
import io
import re
import tokenize
from pathlib import Path

import nbformat

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
LESSONS = sorted(NOTEBOOKS.glob("*.ipynb"))  # every lesson, 00_setup first
TWINS = sorted((NOTEBOOKS / "zh").glob("*.ipynb"))  # their Chinese twins (scripts/sync_translations.py)


def notebook_path(notebook: str | Path) -> Path:
    """The path of `notebook`: a file name in notebooks/ (e.g. "03_autopipeline.ipynb"), or a path as it is."""
    path = NOTEBOOKS / notebook if isinstance(notebook, str) else Path(notebook)
    assert path.is_file(), f"no notebook at {path}"
    return path


def read_notebook(notebook: str | Path) -> nbformat.NotebookNode:
    """The whole notebook (cells with their outputs, and its metadata), as stored on disk."""
    return nbformat.read(notebook_path(notebook), as_version=4)


@functools.lru_cache(maxsize=64)
def _cells(path: Path, modified: int) -> tuple[tuple[str, str], ...]:
    """(cell type, source) of every cell; cached per file version, since many tests read the same lesson."""
    return tuple((c.cell_type, c.source) for c in nbformat.read(path, as_version=4).cells)


def cell_sources(notebook: str | Path, cell_type: str | None = "code") -> list[str]:
    """Sources of the cells of `notebook` in order: its code cells, or every cell with cell_type=None."""
    path = notebook_path(notebook)
    cells = _cells(path, path.stat().st_mtime_ns)
    return [source for kind, source in cells if cell_type is None or kind == cell_type]


def without_comments(source: str) -> str:
    """A cell's code with its comments dropped (a cell that does not tokenize, e.g. with `??`, stays as it is)."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError):
        return source
    return tokenize.untokenize(t for t in tokens if t.type != tokenize.COMMENT)


def notebook_code(notebook: str | Path, comments: bool = True) -> str:
    """All code cells of `notebook`, joined by newlines (with comments=False, without their comments)."""
    return "\n".join(source if comments else without_comments(source) for source in cell_sources(notebook))


def missing_calls(notebook: str | Path, calls: list[str]) -> list[str]:
    """The `calls` that no code cell of `notebook` writes out. A call only in a comment does not count; spaces and
    line breaks are ignored, since the formatter may put each argument on its own line."""
    flat = re.sub(r"\s+", "", notebook_code(notebook, comments=False))
    return [call for call in calls if re.sub(r"\s+", "", call) not in flat]


def notebook_text(notebook: str | Path) -> str:
    """Every cell of `notebook` (markdown too), joined by newlines: the text a learner reads."""
    return "\n".join(cell_sources(notebook, None))


def notebook_cell(notebook: str | Path, marker: str) -> str:
    """Source of the one code cell of `notebook` (a file name in notebooks/, or a path) that contains `marker`."""
    cells = [source for source in cell_sources(notebook) if marker in source]
    assert len(cells) == 1, f"expected one code cell of {Path(notebook).name} containing {marker!r}, found {len(cells)}"
    return cells[0]


def run_cell(notebook: str | Path, marker: str, namespace: dict) -> dict:
    """Execute the whole cell containing `marker` in `namespace` (updated in place and returned)."""
    exec(compile(notebook_cell(notebook, marker), str(notebook_path(notebook)), "exec"), namespace)
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
    exec(compile(ast.Module(body=chosen, type_ignores=[]), str(notebook_path(notebook)), "exec"), namespace)
    return namespace


def execute_notebook(notebook: str | Path, **env: str | None) -> nbformat.NotebookNode:
    """Execute a whole lesson in a fresh kernel, in its own folder, with `env` added to the environment (a value of
    None removes that variable); return the notebook with its outputs."""
    import os

    from nbclient import NotebookClient

    path = notebook_path(notebook)
    nb = read_notebook(path)
    where = {"metadata": {"path": str(path.parent)}}
    environ = {**os.environ, **env}
    environ = {key: value for key, value in environ.items() if value is not None}
    NotebookClient(nb, timeout=300, kernel_name="python3", resources=where).execute(env=environ)
    return nb
