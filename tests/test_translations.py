"""Every English lesson has a Chinese twin in notebooks/zh/ that is in step with it (scripts/sync_translations.py):
same cells and ids, same code beyond comments and setup(lang="zh"), and every markdown cell translated from the
English text as it is now. The checker itself is tested on changed copies, so it can fail."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import nbformat
import pytest
from notebook_code import LESSONS

ROOT = Path(__file__).resolve().parents[1]


def _load_sync():
    """scripts/sync_translations.py, imported by its path (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("sync_translations", ROOT / "scripts" / "sync_translations.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up
    spec.loader.exec_module(module)
    return module


sync = _load_sync()


@pytest.mark.parametrize("english", LESSONS, ids=lambda p: p.name)
def test_the_chinese_twin_is_in_step_with_the_english_lesson(english):
    found = sync.problems(english)
    assert not found, "run python scripts/sync_translations.py, then translate:\n" + "\n".join(map(str, found))


@pytest.mark.parametrize("english", LESSONS, ids=lambda p: p.name)
def test_the_twin_reads_in_chinese(english):
    """A stamped cell must really be translated: prose in Chinese, and code comments in Chinese where English has any
    (a comment that is only code, a URL or a number may stay as it is)."""
    twin = nbformat.read(sync.twin_path(english), as_version=4)
    en = nbformat.read(english, as_version=4)
    english_prose = [
        b.get("id")
        for a, b in zip(en.cells, twin.cells)
        if b.cell_type == "markdown" and not sync.is_translation(b.source, a.source)
    ]
    assert not english_prose, f"{english.name}: markdown cells still in English: {english_prose}"
    wordy = re.compile(r"#[^\n]*[A-Za-z]{3,}[^\n]*\s[A-Za-z]{3,}\s[A-Za-z]{3,}")  # a comment of three English words
    for a, b in zip(en.cells, twin.cells):
        if a.cell_type == "code" and wordy.search(a.source) and a.source == b.source:
            pytest.fail(f"{english.name}, cell {a.get('id')}: its English comments are not translated")


@pytest.fixture
def pair(tmp_path):
    """A copy of lesson 00, and a twin made from it by the sync, with every markdown cell "translated", to change."""
    english, twin = tmp_path / "00_setup.ipynb", tmp_path / "zh" / "00_setup.ipynb"
    english.write_bytes(LESSONS[0].read_bytes())
    made, _ = sync.synced(nbformat.read(english, as_version=4), None)
    for cell in made.cells:
        if cell.cell_type == "markdown":
            cell.source = "译文：" + cell.source
    made, _ = sync.synced(nbformat.read(english, as_version=4), made)  # stamps the translations
    sync.write(made, twin)
    return english, twin


def _edit(path: Path, change) -> None:
    nb = nbformat.read(path, as_version=4)
    change(nb)
    nbformat.write(nb, str(path))


def _markdown(nb):
    return next(c for c in nb.cells if c.cell_type == "markdown")


def _last_code(nb):
    return [c for c in nb.cells if c.cell_type == "code"][-1]


def test_a_changed_english_markdown_cell_is_named(pair):
    english, twin = pair
    assert sync.problems(english, twin) == []
    _edit(english, lambda nb: setattr(_markdown(nb), "source", _markdown(nb).source + "\nOne more sentence."))
    found = sync.problems(english, twin)
    cid = _markdown(nbformat.read(english, as_version=4)).id
    assert [(p.lesson, p.cell) for p in found] == [("00_setup.ipynb", cid)]
    assert "changed since it was translated" in str(found[0]) and "One more sentence." in str(found[0])


def test_a_comment_may_differ_but_code_may_not(pair):
    english, twin = pair
    _edit(twin, lambda nb: setattr(_last_code(nb), "source", "# 一条中文注释\n" + _last_code(nb).source))
    assert sync.problems(english, twin) == []
    _edit(twin, lambda nb: setattr(_last_code(nb), "source", _last_code(nb).source + "\nx = 1"))
    found = sync.problems(english, twin)
    assert len(found) == 1 and "differs beyond comments" in found[0].what


def test_the_first_cell_must_ask_for_chinese(pair):
    english, twin = pair
    first = lambda nb: next(c for c in nb.cells if c.cell_type == "code")  # noqa: E731
    _edit(twin, lambda nb: setattr(first(nb), "source", first(nb).source.replace('lang="zh"', "")))
    assert any('setup(lang="zh")' in p.what for p in sync.problems(english, twin))


def test_a_missing_twin_and_moved_cells_are_named(pair, tmp_path):
    english, twin = pair
    assert "no Chinese twin" in sync.problems(english, tmp_path / "nowhere.ipynb")[0].what
    _edit(twin, lambda nb: nb.cells.reverse())
    assert "same order" in sync.problems(english, twin)[0].what


def test_sync_copies_changed_code_keeps_translated_comments_and_flags_new_cells(pair):
    english, twin = pair
    en, zh = nbformat.read(english, as_version=4), nbformat.read(twin, as_version=4)
    code_ids = [c.id for c in en.cells if c.cell_type == "code"]
    cells = {c.id: c for c in en.cells}
    cells[code_ids[-1]].source += "\nprint('new line')"
    new = nbformat.v4.new_markdown_cell("A new English paragraph.")
    en.cells.insert(1, new)
    synced, done = sync.synced(en, zh)
    by_id = {c.id: c for c in synced.cells}
    assert [c.id for c in synced.cells] == [c.id for c in en.cells]
    assert by_id[code_ids[-1]].source == cells[code_ids[-1]].source  # changed code: copied from English
    kept = code_ids[0]  # unchanged code: the twin's version, translated comment and lang="zh" included
    assert by_id[kept].source == next(c for c in zh.cells if c.id == kept).source and 'lang="zh"' in by_id[kept].source
    assert by_id[new.id].source == "A new English paragraph." and sync.translated_from(by_id[new.id]) is None
    assert any(new.id in line for line in done) and any(code_ids[-1] in line for line in done)


def test_a_new_translation_is_stamped_with_its_english_hash():
    en = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("Hello")])
    zh = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("你好")])
    zh.cells[0].id = en.cells[0].id
    synced, done = sync.synced(en, zh)
    assert sync.translated_from(synced.cells[0]) == sync.source_hash("Hello") and done


def test_an_english_cell_with_a_chinese_term_is_not_taken_for_a_translation():
    en = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("The tokenizer (分词器) splits words.")])
    zh = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("The tokenizer (分词器) splits words.")])
    zh.cells[0].id = en.cells[0].id
    synced, _ = sync.synced(en, zh)
    assert sync.translated_from(synced.cells[0]) is None


def _glossary(readme: Path) -> list[str]:
    lines = readme.read_text(encoding="utf-8").splitlines()
    start = lines.index("| English | 中文 |")
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append(line)
    return rows


def test_both_readmes_carry_the_same_glossary():
    """The glossary is the translators' word list: README.md and README.zh-CN.md show the same table."""
    english, chinese = _glossary(ROOT / "README.md"), _glossary(ROOT / "README.zh-CN.md")
    assert len(english) > 50 and english == chinese, set(english) ^ set(chinese)


def test_the_chinese_readme_has_no_line_break_inside_chinese_text():
    text = (ROOT / "README.zh-CN.md").read_text(encoding="utf-8")
    joined = sync.join_wrapped_lines(text)
    assert joined == text, "a line break between Chinese characters shows as a space: join the lines of README.zh-CN.md"
