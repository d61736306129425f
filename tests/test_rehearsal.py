"""One lesson rehearsed in full mode on every test run (`make rehearse` runs them all): full mode's code path with
every loop cut to 2 steps. Lesson 04 is the quickest to rehearse (about 20 s); it takes full mode's dataset path
(the hub, then the fallbacks) and full-size transforms."""

from __future__ import annotations

import pytest
from notebook_code import execute_notebook

LESSON = "04_datasets.ipynb"


@pytest.mark.slow
def test_lesson_04_rehearses_in_full_mode(tmp_path):
    nb = execute_notebook(
        LESSON, COURSE_MODE="full", COURSE_REHEARSAL="1", HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf-home")
    )
    status = "".join(output.get("text", "") for output in nb.cells[1].outputs)
    assert "mode      : full" in status and "REHEARSAL" in status, status
    figures = sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
    assert figures >= 4
