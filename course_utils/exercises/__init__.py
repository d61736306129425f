"""Checks for the lessons' exercises. Each check prints a verdict and returns True or False; it never raises on a
wrong answer (so a half-done notebook still runs top to bottom), and an answer left as None is 'not attempted'."""

from __future__ import annotations

from course_utils.i18n import tr


def verdict(ok: bool, success: str, failure: str) -> bool:
    """Print a pass/fail line with the explanation for the learner, and return `ok`. The caller translates both
    messages with `course_utils.i18n.tr`, which fills in their values."""
    print(("✅ " + success) if ok else ("❌ " + failure))
    return ok


def not_attempted(what: str) -> bool:
    """Print a reminder for an exercise left blank, and return False. `what` is already translated (`tr`)."""
    print("⏳ " + tr("Not attempted yet: {what}", what=what))
    return False
