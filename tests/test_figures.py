"""Executed lessons keep their figures under any matplotlib backend. MPLBACKEND=Agg (set by make test, the GPU check
and many servers) draws nothing with plt.show(); the course's figure helpers display a PNG themselves, and setup()
switches a notebook kernel to the inline backend for the lesson's own plt.show().

The lesson executed here is the Chinese twin of lesson 04: its code is the English lesson's (tests/test_translations.py
keeps them equal), `make test` already executes the English one, and this way the twin also runs whole, from the
notebooks/zh/ folder, with its status block in Chinese."""

from __future__ import annotations

import re

import pytest
from notebook_code import NOTEBOOKS, execute_notebook

LESSON = NOTEBOOKS / "zh" / "04_datasets.ipynb"  # the quickest lesson with figures of every kind, in Chinese
pytestmark = pytest.mark.slow  # executes the whole lesson
FIGURE_CALL = re.compile(r"^\s*(show|plt\.show|plot_\w+|show_\w+)\(|^\s*[\w.]*\bshow\(", re.MULTILINE)


@pytest.fixture(scope="module")
def executed():
    return execute_notebook(LESSON, MPLBACKEND="Agg", COURSE_MODE="smoke", HF_HUB_OFFLINE="1")


def _images(cell) -> int:
    return sum("image/png" in output.get("data", {}) for output in cell.get("outputs", []))


def test_every_figure_cell_keeps_its_figure_under_agg(executed):
    figure_cells = [c for c in executed.cells if c.cell_type == "code" and FIGURE_CALL.search(c.source)]
    assert len(figure_cells) >= 4, "the lesson should draw figures with show() and plt.show()"
    missing = [c.source.splitlines()[0] for c in figure_cells if _images(c) == 0]
    assert not missing, f"cells that drew no figure under MPLBACKEND=Agg: {missing}"
    assert any("plt.show()" in c.source for c in figure_cells), "no cell of the lesson's own plt.show() was checked"


def test_no_figure_is_drawn_twice(executed):
    for cell in executed.cells:
        if cell.cell_type == "code":
            calls = len(FIGURE_CALL.findall(cell.source))
            assert _images(cell) <= max(calls, 1), f"a figure appears twice: {cell.source.splitlines()[0]}"


def test_the_twin_runs_in_chinese_from_its_own_folder(executed):
    code = [cell for cell in executed.cells if cell.cell_type == "code"]
    text = "\n".join(o.get("text", "") for cell in code for o in cell.outputs if o.output_type == "stream")
    assert "模式" in text and "设备" in text, text[:500]  # setup(lang="zh")'s status block
