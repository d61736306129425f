"""Notebooks are stored clean, and nothing in the course uses outdated APIs, deleted repos or secrets."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
from notebook_code import LESSONS, TWINS, cell_sources, notebook_text, read_notebook

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = LESSONS + TWINS
CODE = NOTEBOOKS + sorted((ROOT / "course_utils").rglob("*.py"))
DOCS = [ROOT / "README.md", *sorted(ROOT.glob("README.*.md"))]  # may quote old error messages, but never a token
TOKEN = re.compile(r"hf_[A-Za-z0-9]{30,}")
OUTDATED = {
    "use_auth_token": "use token= (huggingface_hub 1.0 removed use_auth_token)",
    'revision="fp16"': 'use variant="fp16"',
    "huggingface-cli": "use `hf download` / `hf auth login` (the old CLI was removed in huggingface_hub 1.0)",
    "runwayml/": "use stable-diffusion-v1-5/stable-diffusion-v1-5 (runwayml's repo was deleted)",
    "0.18215": "use vae.config.scaling_factor",
    '["sample"]': "outputs are dataclasses: use .sample / .images, or return_dict=False and [0]",
    "torch_dtype": "use dtype= (torch_dtype is deprecated in diffusers and transformers)",
    "resume_download": "downloads always resume in huggingface_hub >= 1.0; the argument was removed",
    "local_dir_use_symlinks": "removed in huggingface_hub 1.0",
    "enable_vae_tiling": "use pipe.vae.enable_tiling()",
    "stabilityai/stable-diffusion-2": "Stability AI took the SD 2.x repos down; use stable-diffusion-v1-5/...",
    "CompVis/ldm": "the CompVis LDM repos are not diffusers models any more",
    "lambdalabs/pokemon": "the Pokémon caption dataset was taken down",
}
# Documents a learner does not have: the course describes the thing itself instead.
ELSEWHERE = re.compile(r"seed[ -]notes|the notes\b|notes'|\bissue (id|#?\d)", re.IGNORECASE)


def text_of(path: Path) -> str:
    if path.suffix == ".ipynb":
        return notebook_text(path)
    return path.read_text(encoding="utf-8")


def test_there_are_lessons():
    assert NOTEBOOKS and NOTEBOOKS[0].name.startswith("00_")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_notebook_is_stored_without_outputs_and_with_plain_kernelspec(path):
    nb = read_notebook(path)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert not cell.get("outputs") and cell.get("execution_count") is None, f"cell {i} has outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_notebook_starts_with_setup(path):
    assert "course_utils.setup(" in cell_sources(path)[0]


@pytest.mark.parametrize("path", CODE + DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_tokens(path):
    assert not TOKEN.search(text_of(path)), f"{path.name}: something that looks like a Hugging Face token"


@pytest.mark.parametrize("path", CODE, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_outdated_apis(path):
    """An outdated name may appear only on a line that calls it older or deprecated (a lesson names the old keyword
    a learner will meet in older code); nowhere is it used."""
    lines = [line for line in text_of(path).splitlines() if not re.search(r"\bolder\b|deprecated|旧|弃用", line, re.I)]
    text = "\n".join(lines)
    found = {pattern: fix for pattern, fix in OUTDATED.items() if pattern in text}
    assert not found, f"{path.name}: " + "; ".join(f"{p!r}: {fix}" for p, fix in found.items())


REFERENCED = (
    CODE
    + DOCS
    + sorted((ROOT / "scripts").glob("*.py"))
    + sorted((ROOT / "bench").glob("*.py"))
    + [p for p in sorted((ROOT / "tests").glob("*.py")) if p.name != "test_hygiene.py"]
)


@pytest.mark.parametrize("path", REFERENCED, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_references_to_documents_the_learner_lacks(path):
    found = sorted({m.group(0) for m in ELSEWHERE.finditer(text_of(path))})
    assert not found, f"{path.name} refers to {found}: describe the thing itself"


def test_the_checks_can_fail(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text('pipe = X.from_pretrained("runwayml/stable-diffusion-v1-5", use_auth_token="hf_' + "a" * 34 + '")')
    with pytest.raises(AssertionError, match="token"):
        test_no_tokens(bad)
    with pytest.raises(AssertionError, match="runwayml"):
        test_no_outdated_apis(bad)
    outside = "seed" + " notes"  # built here, so this file does not itself refer to such a document
    bad.write_text(f"# the 128 px model of the {outside}")
    with pytest.raises(AssertionError, match=outside):
        test_no_references_to_documents_the_learner_lacks(bad)


MODEL_CONFIGS = sorted((ROOT / "data" / "models").rglob("*config.json"))


@pytest.mark.parametrize("path", MODEL_CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_models_name_no_path_of_the_machine_that_trained_them(path):
    config = json.loads(path.read_text())
    assert "_name_or_path" not in config or not Path(str(config["_name_or_path"])).is_absolute(), path


MODULE_PATH = re.compile(r"course_utils/[\w/]+\.py")
DOTTED = re.compile(r"\bcourse_utils\.([a-z][a-z_]*)")


@pytest.mark.parametrize("path", NOTEBOOKS + DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_named_modules_exist(path):
    """A lesson or the README that names a module of the package names one that exists (after a move, too)."""
    text = text_of(path)
    missing = [m for m in MODULE_PATH.findall(text) if not (ROOT / m).is_file()]
    package = ROOT / "course_utils"
    missing += [
        f"course_utils.{m}"
        for m in DOTTED.findall(text)
        if not (package / f"{m}.py").is_file()
        and not (package / m).is_dir()
        and m not in ("setup", "MODELS", "DATASETS")
    ]
    assert not missing, f"{path.name} names modules that do not exist: {sorted(set(missing))}"


# Code written out in a lesson and also held by the library is marked at both ends, in the manner of diffusers'
# "# Copied from": in the cell "# Copied from course_utils.X.name;" and in the library
# "# Copied in notebooks/NN.ipynb;", each followed by "# kept equal by tests/test_x.py::test_name", the test that
# fails when the two drift apart.
COPIED_FROM = re.compile(r"# Copied from (course_utils[\w.]*)[^\n]*\n# kept equal by (tests/\w+\.py::\w+)")
COPIED_IN = re.compile(r"# Copied in (notebooks/[\w.]+\.ipynb)[^\n]*\n\s*# kept equal by (tests/\w+\.py::\w+)")
LIBRARY_END_PENDING: set[str] = set()  # library ends not marked yet (none)


def copies_in_lessons() -> list[tuple[str, str, str]]:
    """(notebook, library name, test) of every "# Copied from" marker in the lessons' code cells."""
    found = []
    for path in NOTEBOOKS:
        cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
        for cell in cells:
            for name, test in COPIED_FROM.findall("".join(cell["source"])):
                found.append((f"notebooks/{path.name}", name, test))
    return found


def test_copies_between_lessons_and_the_library_are_marked_at_both_ends():
    import importlib

    lessons = copies_in_lessons()
    assert lessons, "no lesson marks a copy: the markers' format changed?"
    library = {}
    for path in sorted((ROOT / "course_utils").rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for notebook, test in COPIED_IN.findall(path.read_text(encoding="utf-8")):
            library.setdefault((module, notebook, test), path)
    for notebook, name, test in lessons:
        file, function = test.split("::")
        assert re.search(rf"^def {function}\(", (ROOT / file).read_text(), re.M), f"{notebook}: no test {test}"
        module, _, attribute = name.rpartition(".")
        assert hasattr(importlib.import_module(module), attribute), f"{notebook}: {name} does not exist"
        if name not in LIBRARY_END_PENDING:
            assert (module, notebook, test) in library, (
                f"{notebook} copies {name}, but {module} has no '# Copied in {notebook};' marker naming {test}"
            )
    marked = {(name.rpartition(".")[0], notebook, test) for notebook, name, test in lessons}
    unmatched = sorted(set(library) - marked)
    assert not unmatched, f"library markers with no lesson marker: {unmatched}"


LONGEST_FUNCTION = 60  # lines, decorators and docstring included
PYTHON = sorted(p for folder in ("course_utils", "scripts", "bench", "tests") for p in (ROOT / folder).rglob("*.py"))


def long_functions(paths: list[Path], limit: int = LONGEST_FUNCTION) -> list[str]:
    """'file:line name (N lines)' for every function or method in `paths` longer than `limit` lines."""
    found = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                length = node.end_lineno - first + 1
                if length > limit:
                    name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
                    found.append(f"{name}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_functions_are_short():
    """A function over ~60 lines does more than one job: split it (a script's main into arguments, run, report)."""
    found = long_functions(PYTHON)
    assert not found, f"functions longer than {LONGEST_FUNCTION} lines:\n" + "\n".join(found)


def test_the_length_check_can_fail(tmp_path):
    """A function of exactly the limit passes; the same body under a decorator is one line too long."""
    code = tmp_path / "long.py"
    body = "".join(f"    x{i} = {i}\n" for i in range(LONGEST_FUNCTION - 1))
    code.write_text(f"def fits():\n{body}\n\n@staticmethod\ndef decorated():\n{body}")
    decorated_at = LONGEST_FUNCTION + 4  # fits, two blank lines, the decorator
    assert long_functions([code]) == [f"{code}:{decorated_at} decorated ({LONGEST_FUNCTION + 1} lines)"]


def test_the_files_run_first_exist():
    """conftest.LONG_FIRST orders the suite for the 2 workers: a renamed file would silently fall to the end."""
    from conftest import LONG_FIRST

    missing = [path for path in LONG_FIRST if not (ROOT / path).is_file()]
    assert not missing, f"conftest.LONG_FIRST names files that do not exist: {missing}"
