"""Keep notebooks/zh/ in step with the English lessons, and list what still needs a translator.

Each lesson in notebooks/ has a Chinese twin in notebooks/zh/ with the same file name: the same cells in the same
order with the same ids, the same code (only the comments are translated, and the first cell calls
`course_utils.setup(lang="zh")`), and translated markdown. Each translated markdown cell records, in its metadata
("translation": {"source_sha": ...}), a hash of the English cell it translates, so a changed English cell shows.

    python scripts/sync_translations.py            # update the twins, print what is left to translate
    python scripts/sync_translations.py --check    # change nothing; exit 1 if anything is out of step
    python scripts/sync_translations.py --stamp 05_train_ddpm.ipynb CELL_ID ...   # "I re-translated these cells"

Updating does this, lesson by lesson:
- a lesson with no twin gets one: a copy with English markdown, listed as untranslated;
- a code cell whose code changed (not only its comments) is copied across, with English comments to translate;
  a code cell whose code is the same keeps its translated comments;
- new English cells are copied in at their place, and cells the English lesson no longer has are dropped;
- a translated markdown cell without a hash (a new translation: its text differs from the English and has Chinese
  in it) is stamped with its English cell's hash; a markdown cell whose English changed since is listed as stale,
  with the English text to compare;
- wrapped lines of translated Chinese text are joined, because Jupyter shows a line break inside a paragraph as a
  space.
tests/test_translations.py fails on anything this script lists."""

from __future__ import annotations

import argparse
import copy
import hashlib
import io
import re
import sys
import tokenize
from dataclasses import dataclass
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
LANG = "zh"
TWINS = NOTEBOOKS / LANG
CJK = re.compile(r"[\u4e00-\u9fff]")
SETUP = re.compile(r"course_utils\.setup\(")
LANG_ARG = re.compile(rf'\s*,\s*lang="{LANG}"|lang="{LANG}"\s*,\s*|lang="{LANG}"')


@dataclass
class Problem:
    """Something in a twin that is out of step with its English lesson."""

    lesson: str
    cell: str  # the cell id ("" for the whole notebook)
    what: str

    def __str__(self) -> str:
        return f"{self.lesson}" + (f", cell {self.cell}" if self.cell else "") + f": {self.what}"


def source_hash(text: str) -> str:
    """The hash a translated markdown cell records of the English cell it translates."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def code_key(source: str) -> str:
    """A code cell's code without its comments, blank lines and the twin's lang argument: equal keys mean the two
    cells differ only in comments. (A cell that does not tokenize is compared as it is.)"""
    source = LANG_ARG.sub("", source)
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError):
        return source
    kept = (t.string for t in tokens if t.type not in (tokenize.COMMENT, tokenize.NL, tokenize.ENDMARKER))
    return " ".join(kept)


def with_lang(source: str) -> str:
    """The first cell of a twin: the same setup() call with lang="zh" added."""
    if f'lang="{LANG}"' in source:
        return source
    if "course_utils.setup()" in source:
        return source.replace("course_utils.setup()", f'course_utils.setup(lang="{LANG}")', 1)
    return SETUP.sub(f'course_utils.setup(lang="{LANG}", ', source, count=1)


WIDE = "\u3000-\u303f\u4e00-\u9fff\uff00-\uffef"  # Chinese characters and full-width punctuation
PUNCTUATION = "\u3000-\u303f\uff00-\uffef"  # full-width punctuation needs no space after it
BLOCK_START = re.compile(r"\s*([-*+]\s|[>|#]|\d+[.)]\s|```|\$\$|<)")
QUOTE = re.compile(r"\s*>\s?")


def join_wrapped_lines(text: str) -> str:
    """A translated markdown cell with its wrapped lines joined where a line ends or the next begins in Chinese:
    Jupyter shows a line break inside a paragraph as a space, which is wrong between two Chinese characters. Lists,
    tables, headings, code and maths blocks keep their lines; lines of one quote are joined inside the quote."""
    out: list[str] = []
    fenced = False
    for line in text.split("\n"):
        bare = line.strip()
        if bare.startswith("```") or bare == "$$":
            fenced = not fenced
            out.append(line)
            continue
        if fenced or not out:
            out.append(line)
            continue
        quoted = bool(QUOTE.match(line) and QUOTE.match(out[-1]))
        before = QUOTE.sub("", out[-1], count=1) if quoted else out[-1]
        after = QUOTE.sub("", line, count=1) if quoted else line
        if _continues(before, after):
            tight = re.search(f"[{WIDE}]$", before.rstrip()) and re.match(f"[{WIDE}]", after.strip())
            tight = tight or re.search(f"[{PUNCTUATION}]$", before.rstrip())
            out[-1] = out[-1].rstrip() + ("" if tight else " ") + after.strip()
        else:
            out.append(line)
    return "\n".join(out)


def _continues(before: str, line: str) -> bool:
    """True when `line` continues the paragraph of `before` and one of them is Chinese where they meet."""
    if not before.strip() or not line.strip() or BLOCK_START.match(line):
        return False
    if before.lstrip().startswith(("#", "|", "$$", "```")) or before.endswith(("  ", "\\")):
        return False
    return bool(re.search(f"[{WIDE}]$", before.rstrip()) or re.match(f"[{WIDE}]", line.strip()))


def is_translation(text: str, english: str) -> bool:
    """True when `text` reads as a translation of `english`: it has changed, and it has Chinese in it (an English
    cell may carry a Chinese term in parentheses, so Chinese alone does not tell)."""
    return text.strip() != english.strip() and bool(CJK.search(text))


def translated_from(cell) -> str | None:
    """The English hash a translated markdown cell records (None: not translated yet)."""
    return cell.get("metadata", {}).get("translation", {}).get("source_sha")


def stamp(cell, english_source: str) -> None:
    """Record that `cell` translates this English text."""
    cell.metadata["translation"] = {"source_sha": source_hash(english_source)}


def twin_path(english: Path) -> Path:
    return TWINS / english.name


def _first_code_id(nb) -> str | None:
    return next((c.get("id") for c in nb.cells if c.cell_type == "code"), None)


def synced(english_nb, twin_nb) -> tuple[nbformat.NotebookNode, list[str]]:
    """The twin brought in step with the English lesson, and what was done (one line per cell touched)."""
    done: list[str] = []
    old = {c.get("id"): c for c in (twin_nb.cells if twin_nb is not None else [])}
    first_code = _first_code_id(english_nb)
    cells = []
    for cell in english_nb.cells:
        cid, mine = cell.get("id"), old.get(cell.get("id"))
        english = cell.source if cid != first_code else with_lang(cell.source)
        if mine is None or mine.cell_type != cell.cell_type:
            new = copy.deepcopy(cell)
            new.source = english
            new.metadata.pop("translation", None)
            cells.append(new)
            done.append(f"cell {cid}: copied from English ({cell.cell_type}, to translate)")
            continue
        if cell.cell_type == "code" and code_key(mine.source) != code_key(english):
            mine.source = english
            done.append(f"cell {cid}: code changed in English, copied across (translate its comments)")
        if cell.cell_type == "markdown" and translated_from(mine) is None and is_translation(mine.source, cell.source):
            stamp(mine, cell.source)
            done.append(f"cell {cid}: translation stamped")
        if cell.cell_type == "markdown" and translated_from(mine) is not None:
            joined = join_wrapped_lines(mine.source)
            if joined != mine.source:
                mine.source = joined
                done.append(f"cell {cid}: wrapped Chinese lines joined")
        cells.append(mine)
    dropped = [cid for cid in old if cid not in {c.get("id") for c in english_nb.cells}]
    done += [f"cell {cid}: dropped (no longer in the English lesson)" for cid in dropped]
    twin = copy.deepcopy(english_nb)
    twin.cells = cells
    return twin, done


def problems(english: Path, twin: Path | None = None) -> list[Problem]:
    """Everything that keeps `twin` (default: its notebooks/zh/ twin) from being in step with `english`."""
    twin = twin or twin_path(english)
    name = english.name
    if not twin.is_file():
        return [Problem(name, "", f"no Chinese twin: run python scripts/sync_translations.py to create {LANG}/{name}")]
    en, zh = nbformat.read(english, as_version=4), nbformat.read(twin, as_version=4)
    ids_en, ids_zh = [c.get("id") for c in en.cells], [c.get("id") for c in zh.cells]
    if None in ids_en or None in ids_zh:
        return [Problem(name, "", "cells without ids: run python scripts/normalize_notebooks.py on both")]
    if ids_en != ids_zh:
        return [Problem(name, "", "the twin's cells are not the English cells in the same order: run the sync")]
    found = []
    first_code = _first_code_id(en)
    for a, b in zip(en.cells, zh.cells):
        cid = a.get("id")
        if a.cell_type != b.cell_type:
            found.append(Problem(name, cid, f"{a.cell_type} in English, {b.cell_type} in the twin"))
        elif a.cell_type == "code":
            if cid == first_code and f'lang="{LANG}"' not in b.source:
                found.append(Problem(name, cid, f'the first cell must call course_utils.setup(lang="{LANG}")'))
            if code_key(a.source) != code_key(b.source):
                found.append(Problem(name, cid, "the code differs beyond comments: run the sync"))
        elif a.cell_type == "markdown":
            sha = translated_from(b)
            if sha is None:
                found.append(Problem(name, cid, "markdown not translated yet"))
            elif join_wrapped_lines(b.source) != b.source:
                found.append(Problem(name, cid, "a line break inside Chinese text shows as a space: run the sync"))
            elif sha != source_hash(a.source):
                found.append(Problem(name, cid, "the English markdown changed since it was translated:\n" + a.source))
    return found


def english_lessons() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def write(nb, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))


def sync_all(lessons: list[Path]) -> None:
    for english in lessons:
        twin = twin_path(english)
        en = nbformat.read(english, as_version=4)
        zh = nbformat.read(twin, as_version=4) if twin.is_file() else None
        new, done = synced(en, zh)
        if done:
            write(new, twin)
        for line in done:
            print(f"{english.name}, {line}")


def stamp_cells(lesson: str, ids: list[str]) -> None:
    english, twin = NOTEBOOKS / lesson, TWINS / lesson
    en, zh = nbformat.read(english, as_version=4), nbformat.read(twin, as_version=4)
    sources = {c.get("id"): c.source for c in en.cells if c.cell_type == "markdown"}
    for cell in zh.cells:
        if cell.get("id") in ids:
            stamp(cell, sources[cell.get("id")])
    unknown = set(ids) - set(sources)
    if unknown:
        raise SystemExit(f"--stamp: {sorted(unknown)} are not markdown cells of {lesson}")
    write(zh, twin)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("lessons", nargs="*", help="lesson file names (default: all), e.g. 05_train_ddpm.ipynb")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a twin is out of step")
    parser.add_argument("--stamp", nargs="+", metavar=("LESSON", "CELL_ID"), help="mark re-translated cells")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.stamp:
        stamp_cells(args.stamp[0], args.stamp[1:])
        return 0
    lessons = [NOTEBOOKS / name for name in args.lessons] or english_lessons()
    if not args.check:
        sync_all(lessons)
    left = [p for english in lessons for p in problems(english)]
    for problem in left:
        print(problem)
    print(f"{len(left)} cells to translate or check in {len(lessons)} lessons")
    return 1 if (args.check and left) else 0


if __name__ == "__main__":
    sys.exit(main())
