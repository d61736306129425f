"""The course speaks the learner's language: every message written with `tr`/`msg` has a Chinese entry with the same
placeholders, the catalogue holds nothing the code no longer says, every exercise verdict goes through `tr`, and
setup(lang="zh") / COURSE_LANG=zh really print Chinese."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from course_utils import i18n

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "course_utils"
SOURCES = sorted(PACKAGE.rglob("*.py"))
TREES = {path: ast.parse(path.read_text(encoding="utf-8")) for path in SOURCES}  # each file parsed once
CJK = re.compile(r"[\u4e00-\u9fff]")


def _calls(tree: ast.AST, names: set[str]):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
            if name in names:
                yield name, node


def _templates() -> dict[str, list[str]]:
    """Every English template passed to tr()/msg() in course_utils, with where it is written."""
    found: dict[str, list[str]] = {}
    for path in SOURCES:
        for _, call in _calls(TREES[path], {"tr", "msg"}):
            where = f"{path.relative_to(ROOT)}:{call.lineno}"
            first = call.args[0] if call.args else None
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                found.setdefault(first.value, []).append(where)
    return found


TEMPLATES = _templates()


def test_the_code_writes_messages_with_tr():
    assert len(TEMPLATES) > 30, "expected the status block's and the exercises' messages"


def test_every_tr_call_fills_exactly_the_placeholders_of_its_template():
    problems = []
    for path in SOURCES:
        for name, call in _calls(TREES[path], {"tr"}):
            where = f"{path.relative_to(ROOT)}:{call.lineno}"
            first = call.args[0] if call.args else None
            if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
                continue  # tr(variable): a template marked with msg() elsewhere, filled by its caller
            given = {k.arg for k in call.keywords}
            if None in given:
                continue  # **values
            wanted = i18n.placeholders(first.value)
            if given != wanted:
                problems.append(f"{where}: template fields {sorted(wanted)}, but the call gives {sorted(given)}")
    assert not problems, "\n".join(problems)


def test_tr_and_msg_take_a_plain_string_so_the_catalogue_can_find_it():
    problems = []
    for path in SOURCES:
        for name, call in _calls(TREES[path], {"msg"}):
            first = call.args[0] if call.args else None
            if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
                problems.append(f"{path.relative_to(ROOT)}:{call.lineno}: msg() needs a string literal")
        for name, call in _calls(TREES[path], {"tr"}):
            if call.args and isinstance(call.args[0], ast.JoinedStr):
                problems.append(
                    f"{path.relative_to(ROOT)}:{call.lineno}: tr(f'...') cannot be looked up; "
                    "write tr('... {x} ...', x=...)"
                )
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("lang", [lang for lang in i18n.LANGS if lang != "en"])
def test_every_message_has_a_translation_with_the_same_placeholders(lang):
    catalogue = i18n.catalogue(lang)
    missing = [f"{where[0]}: {english!r}" for english, where in TEMPLATES.items() if english not in catalogue]
    assert not missing, f"no {lang} entry in course_utils/locale/{lang}/ for:\n" + "\n".join(missing)
    wrong = [
        f"{english!r}: {sorted(i18n.placeholders(english))} against {sorted(i18n.placeholders(text))}"
        for english, text in catalogue.items()
        if english in TEMPLATES and i18n.placeholders(english) != i18n.placeholders(text)
    ]
    assert not wrong, "placeholders differ:\n" + "\n".join(wrong)
    if lang == "zh":
        untranslated = [english for english, text in catalogue.items() if not CJK.search(text)]
        assert not untranslated, f"entries with no Chinese in them: {untranslated}"


@pytest.mark.parametrize("lang", [lang for lang in i18n.LANGS if lang != "en"])
def test_the_catalogue_holds_no_message_the_code_no_longer_writes(lang):
    stale, seen = [], {}
    for path in sorted((i18n.LOCALE / lang).glob("*.json")):
        for english in json.loads(path.read_text(encoding="utf-8")):
            if english not in TEMPLATES:
                stale.append(f"{path.name}: {english!r}")
            if english in seen:
                stale.append(f"{path.name}: {english!r} is also in {seen[english]}")
            seen[english] = path.name
    assert not stale, "stale or repeated catalogue entries:\n" + "\n".join(stale)


def _is_translated(node: ast.AST | None) -> bool:
    """A message argument that goes through tr(), is a name (built by tr() before), or is empty."""
    if node is None or isinstance(node, ast.Name):
        return True
    if isinstance(node, ast.Constant):
        return node.value == ""
    if isinstance(node, ast.IfExp):
        return _is_translated(node.body) and _is_translated(node.orelse)
    if isinstance(node, ast.Call):
        func = node.func
        return (func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")) == "tr"
    return False


def test_every_exercise_verdict_and_hint_goes_through_tr():
    problems = []
    for path in sorted((PACKAGE / "exercises").glob("*.py")):
        tree = TREES[path]
        for name, call in _calls(tree, {"verdict", "not_attempted"}):
            messages = call.args[1:3] if name == "verdict" else call.args[:1]
            messages += [k.value for k in call.keywords if k.arg in ("success", "failure", "what")]
            for node in messages:
                if not _is_translated(node):
                    problems.append(f"{path.relative_to(ROOT)}:{call.lineno}: {ast.unparse(node)[:70]}")
    assert not problems, "messages printed without tr():\n" + "\n".join(problems)


@pytest.fixture
def language(monkeypatch):
    """Each test picks its language; the process's choice is restored after it."""
    saved = list(i18n._chosen)
    monkeypatch.delenv("COURSE_LANG", raising=False)
    yield
    i18n._chosen[:] = saved


def test_tr_fills_values_in_english_and_in_chinese(language):
    i18n.set_lang("en")
    assert i18n.tr("Not attempted yet: {what}", what="x") == "Not attempted yet: x"
    i18n.set_lang("zh")
    text = i18n.tr("Not attempted yet: {what}", what="x")
    assert CJK.search(text) and text.endswith("x")
    assert i18n.tr("a message the catalogue does not hold: {n}", n=3) == "a message the catalogue does not hold: 3"


def test_course_lang_picks_the_language_and_a_bad_one_names_the_choices(language, monkeypatch):
    monkeypatch.setenv("COURSE_LANG", "ZH")
    assert i18n.set_lang(None) == "zh"
    monkeypatch.setenv("COURSE_LANG", "fr")
    with pytest.raises(ValueError, match=r"COURSE_LANG='fr'.*'en', 'zh'"):
        i18n.set_lang(None)
    with pytest.raises(ValueError, match=r"lang='cn'.*'zh'"):
        i18n.set_lang("cn")


def test_setup_prints_its_status_block_in_the_chosen_language(language, capsys):
    import course_utils

    course_utils.setup(mode="smoke", lang="zh", probe_timeout=0.05)
    chinese = capsys.readouterr().out
    course_utils.setup(mode="smoke", lang="en", probe_timeout=0.05)
    english = capsys.readouterr().out
    assert "模式" in chinese and "设备" in chinese and "随机种子" in chinese
    assert "mode      : smoke" in english and not CJK.search(english)
    assert len(chinese.splitlines()) == len(english.splitlines())


def test_an_exercise_check_answers_in_chinese(language, capsys):
    from course_utils.exercises.lesson00_setup import check_cache_folder

    i18n.set_lang("zh")
    assert check_cache_folder("owner/name", None) is False
    assert check_cache_folder("owner/name", "/not/the/cache") is False
    out = capsys.readouterr().out
    assert "还没有作答" in out and "不对" in out and "Not attempted" not in out
