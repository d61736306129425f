"""The package's shape: every module of course_utils sits in one layer, imports only from its own layer or the
layers below (imports inside functions count too), and no imports run in a circle; the README's layout lists every
module, and its table names the modules each lesson imports.

    pytest tests/test_layers.py

is the check. Moving a helper down a layer is always fine; an import that has to go up means the helper is in the
wrong module."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "course_utils"

# From the bottom up. A module may import from its own layer and the ones before it.
LAYERS = [
    ("base", ["paths", "environment", "progress", "hub", "checks", "checks.values", "i18n", "models.architectures"]),
    ("registry", ["models.registry"]),
    ("pictures", ["images", "photos", "noise_schedule", "checks.pipeline_inputs", "emoji_quality"]),
    ("folders", ["folders"]),
    ("datasets", ["hub_datasets", "data"]),
    ("models", ["models", "models.standins", "models.emoji", "models.resolve", "memory", "model_sizes", "big_models"]),
    ("recipes", ["text_to_image", "attention", "flow_matching", "flux_tiny", "joint_attention"]),
    (
        "training",
        [
            "training.config",
            "training.runs",
            "training.runtime",
            "training.plots",
            "training.loop",
            "training.datasets",
        ],
    ),
    ("training package", ["training", "lora", "training.lora"]),
    ("course", ["course"]),
    ("exercises", ["exercises", *(f"exercises.{p.stem}" for p in sorted((PACKAGE / "exercises").glob("lesson*.py")))]),
    ("package", [""]),  # course_utils/__init__.py: setup() and the registry, nothing else
]
LAYER_OF = {name: i for i, (_, names) in enumerate(LAYERS) for name in names}


def module_name(path: Path) -> str:
    """'models.emoji' for course_utils/models/emoji.py, 'training' for its __init__.py, '' for the package's."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(tree: ast.AST) -> dict[str, int]:
    """The course_utils modules that the imports of a syntax tree name (at the top or inside functions), with the
    line of the first: `from course_utils.training import runs` names the module training.runs, `from
    course_utils.training import train` the package training."""
    found: dict[str, int] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = [f"{node.module}.{a.name}" for a in node.names]
            targets = [sub if sub.removeprefix("course_utils.") in MODULES else node.module for sub in subs]
        else:
            continue
        for target in targets:
            if target == "course_utils" or target.startswith("course_utils."):
                name = target[len("course_utils.") :]
                if name in MODULES:
                    found.setdefault(name, node.lineno)
    return found


def imports_of(path: Path) -> dict[str, int]:
    """The course_utils modules a file of the package imports, itself left out."""
    found = imported_modules(ast.parse(path.read_text(encoding="utf-8")))
    found.pop(module_name(path), None)
    return found


GRAPH = {name: imports_of(path) for name, path in MODULES.items()}


def test_every_module_has_a_layer():
    missing = sorted(set(MODULES) - set(LAYER_OF))
    assert not missing, f"put these modules in a layer of LAYERS in {Path(__file__).name}: {missing}"
    gone = sorted(set(LAYER_OF) - set(MODULES))
    assert not gone, f"LAYERS names modules that do not exist: {gone}"


@pytest.mark.parametrize("name", sorted(MODULES), ids=lambda n: n or "course_utils")
def test_imports_never_go_up(name):
    if name not in LAYER_OF:
        pytest.skip("no layer (test_every_module_has_a_layer fails)")
    up = [
        f"line {line}: {target or 'course_utils'} ({LAYERS[LAYER_OF[target]][0]})"
        for target, line in GRAPH[name].items()
        if LAYER_OF.get(target, -1) > LAYER_OF[name]
    ]
    layer = LAYERS[LAYER_OF[name]][0]
    assert not up, f"course_utils.{name} (layer {layer!r}) imports from layers above it: {up}"


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The import cycles of a graph, each as the list of modules around it (depth-first search)."""
    found, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for target in graph.get(node, {}):
            if state.get(target) == "open":
                found.append(path[path.index(target) :] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_no_import_cycles():
    found = cycles(GRAPH)
    assert not found, "import cycles: " + "; ".join(" -> ".join(n or "course_utils" for n in c) for c in found)


def test_the_checks_can_fail():
    assert cycles({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}}) == [["a", "b", "c", "a"]]
    assert not cycles({"a": {"b": 1}, "b": {}})
    here = PACKAGE / "images.py"
    assert "paths" not in imports_of(here) and module_name(here) == "images"
    assert "training.runs" in imports_of(PACKAGE / "training" / "loop.py")  # from course_utils.training import runs


# ---------------------------------------------------------------------------------------------------- the README
def layout_section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("\n## Layout")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def listed_name(path: Path) -> str:
    """How the layout names a file: its path inside course_utils/, a package by its folder ('models/')."""
    relative = path.relative_to(PACKAGE)
    return f"{relative.parent.as_posix()}/" if relative.name == "__init__.py" else relative.as_posix()


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: listed_name(p))
def test_readme_layout_lists_every_module(path):
    name = listed_name(path)
    if name == "./":
        return  # the package itself: the layout's course_utils/ line
    # the name, not as the tail of a longer one (text_to_image.py does not list image.py)
    assert re.search(rf"(?<![\w/]){re.escape(name)}", layout_section()), (
        f"README.md's layout section does not list course_utils/{name}: add it, with what it holds"
    )


def lesson_imports(notebook: Path) -> set[str]:
    """The course_utils modules a lesson's code cells import (`import course_utils` for setup() left out: every
    lesson has it)."""
    found: set[str] = set()
    for cell in nbformat.read(notebook, as_version=4).cells:
        if cell.cell_type == "code":
            source = "\n".join(line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!")))
            found |= set(imported_modules(ast.parse(source)))
    return found - {""}


def lesson_rows() -> dict[str, set[str]]:
    """The layout's table: lesson number -> the modules its row names (`name.py`, `name/file.py`, a package as
    `name/`)."""
    rows = {}
    for line in layout_section().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and re.fullmatch(r"\d\d", cells[0]):
            names = re.findall(r"`([\w/]+\.py|\w+/)`", cells[1])
            rows[cells[0]] = {m.removesuffix(".py").removesuffix("/").replace("/", ".") for m in names}
    return rows


@pytest.mark.parametrize("notebook", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_readme_table_names_the_modules_each_lesson_imports(notebook):
    rows = lesson_rows()
    number = notebook.name[:2]
    assert number in rows, f"README.md's layout table has no row for lesson {number}"
    imported, named = lesson_imports(notebook), rows[number]
    assert named == imported, (
        f"lesson {number}: the README names {sorted(named - imported) or 'no extra'} that it does not import, "
        f"and leaves out {sorted(imported - named) or 'nothing'}"
    )
