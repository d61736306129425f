"""The learner's language for what the course says to them: setup()'s status block and the exercise checks' verdicts
and hints. Error messages stay in English, because they are what learners search for.

The English text is the key, as in gettext. A message is written once, in English, as `tr("... {value} ...",
value=...)`. With `setup(lang="zh")` (or `COURSE_LANG=zh`), `tr` looks the English template up in the Chinese catalogue,
course_utils/locale/zh/*.json, and fills in the same placeholders. A message the catalogue lacks prints in English.
`msg("...")` marks an English message that is stored first and translated later, when it is printed with `tr`.
tests/test_i18n.py checks that every `tr`/`msg` template has a Chinese entry with the same placeholders, and that
the catalogue holds no entry the code no longer uses."""

from __future__ import annotations

import functools
import json
import os
import string
from pathlib import Path

LANGS = ("en", "zh")
LOCALE = Path(__file__).resolve().parent / "locale"
_chosen: list[str] = []  # the language setup(lang=...) picked in this process, if it picked one


def set_lang(lang: str | None) -> str:
    """Use `lang` ("en" or "zh") from now on; None means COURSE_LANG, else English. Returns the language in use."""
    from course_utils.checks.values import require_choice

    if lang is None:
        lang = os.environ.get("COURSE_LANG", "").strip().lower() or "en"
        require_choice("COURSE_LANG", lang, LANGS, "Set COURSE_LANG=zh for Chinese, or COURSE_LANG=en.")
    else:
        require_choice("lang", lang, LANGS, 'Use lang="zh" for Chinese, or lang="en".')
    _chosen[:] = [lang]
    return lang


def current_lang() -> str:
    """The language setup() picked; before any setup(), COURSE_LANG's (English when unset or unknown)."""
    if _chosen:
        return _chosen[0]
    lang = os.environ.get("COURSE_LANG", "").strip().lower()
    return lang if lang in LANGS else "en"


@functools.lru_cache(maxsize=None)
def catalogue(lang: str) -> dict[str, str]:
    """English template -> template in `lang`, from every locale/<lang>/*.json file (English needs none)."""
    entries: dict[str, str] = {}
    for path in sorted((LOCALE / lang).glob("*.json")):
        entries.update(json.loads(path.read_text(encoding="utf-8")))
    return entries


def placeholders(template: str) -> set[str]:
    """The names of a template's `{...}` fields, e.g. {"worst"} for "off by {worst:.3g}"."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def msg(english: str) -> str:
    """Mark an English message template for the catalogue without translating it yet; `tr` translates it later."""
    return english


def tr(english: str, **values) -> str:
    """`english` in the learner's language, with `values` filled into its {placeholders}."""
    lang = current_lang()
    template = english if lang == "en" else catalogue(lang).get(english, english)
    return template.format(**values) if values else template
