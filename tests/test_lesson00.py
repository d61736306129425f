"""Lesson 00: the environment report says the mode the course really runs in (course.mode, course.rehearsal), not a
guess from the hardware."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from course_utils.environment import report


@pytest.mark.parametrize(
    ("mode", "rehearsal", "expected"),
    [("smoke", False, "smoke mode"), ("full", False, "full mode: real checkpoints"), ("full", True, "rehearsal")],
)
def test_report_names_the_courses_mode(tmp_path, capsys, mode, rehearsal, expected):
    report(tmp_path, SimpleNamespace(mode=mode, rehearsal=rehearsal, device="cpu"))
    line = [x for x in capsys.readouterr().out.splitlines() if "lessons run in" in x]
    assert len(line) == 1 and expected in line[0], line
    assert "smoke" not in line[0] or mode == "smoke"


def test_report_without_a_course_names_no_mode(tmp_path, capsys):
    report(tmp_path)
    out = capsys.readouterr().out
    assert "lessons run in" not in out and "smoke" not in out
