"""One lesson executed whole on every test run, in a way `make test`'s nbval run of the lessons does not cover:
- rehearsed in full mode (`make rehearse` runs them all): full mode's code path with every loop cut to 2 steps;
- from its Chinese twin, in notebooks/zh/ (its code is the English lesson's, and tests/test_translations.py keeps it
  so), with the status block in Chinese;
- under MPLBACKEND=Agg (set by make test, the GPU check and many servers), which draws nothing with plt.show(): the
  course's figure helpers display a PNG themselves, and setup() switches a notebook kernel to the inline backend for
  the lesson's own plt.show().

Lesson 04 is the quickest to rehearse (about 15 s), has figures of every kind, and takes full mode's dataset path
(the hub, then the fallbacks) with full-size transforms. One execution serves all the tests of this file."""

from __future__ import annotations

import re

import pytest
from notebook_code import NOTEBOOKS, execute_notebook

LESSON = NOTEBOOKS / "zh" / "04_datasets.ipynb"
pytestmark = pytest.mark.slow  # executes the whole lesson
FIGURE_CALL = re.compile(r"^\s*(show|plt\.show|plot_\w+|show_\w+)\(|^\s*[\w.]*\bshow\(", re.MULTILINE)


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    hf_home = tmp_path_factory.mktemp("rehearsal") / "hf-home"
    return execute_notebook(
        LESSON, COURSE_MODE="full", COURSE_REHEARSAL="1", HF_HUB_OFFLINE="1", HF_HOME=str(hf_home), MPLBACKEND="Agg"
    )


def _images(cell) -> int:
    return sum("image/png" in output.get("data", {}) for output in cell.get("outputs", []))


def _code_cells(nb) -> list:
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def test_lesson_04_rehearses_in_full_mode_in_chinese(executed):
    status = "".join(output.get("text", "") for output in _code_cells(executed)[0].outputs)
    assert "模式" in status and "设备" in status, status  # setup(lang="zh")'s labels
    assert ": full（" in status and "彩排" in status, status  # full mode, rehearsing
    assert sum(_images(cell) for cell in executed.cells) >= 4


def test_every_figure_cell_keeps_its_figure_under_agg(executed):
    figure_cells = [c for c in _code_cells(executed) if FIGURE_CALL.search(c.source)]
    assert len(figure_cells) >= 4, "the lesson should draw figures with show() and plt.show()"
    missing = [c.source.splitlines()[0] for c in figure_cells if _images(c) == 0]
    assert not missing, f"cells that drew no figure under MPLBACKEND=Agg: {missing}"
    assert any("plt.show()" in c.source for c in figure_cells), "no cell of the lesson's own plt.show() was checked"


def test_no_figure_is_drawn_twice(executed):
    for cell in _code_cells(executed):
        calls = len(FIGURE_CALL.findall(cell.source))
        assert _images(cell) <= max(calls, 1), f"a figure appears twice: {cell.source.splitlines()[0]}"
