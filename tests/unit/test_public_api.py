"""The companion's public API: what ``__all__`` exports exists, and every public function, class and method has a
docstring and type hints (COURSE.md section 3: type hints on public functions, docstrings that state shapes)."""

import ast
import importlib
import inspect
import pkgutil
import tomllib
from pathlib import Path

import pytest

import companion
import companion.data

COMPANION = Path(companion.__file__).parent

MODULES = sorted(
    ["companion", "companion.data"]
    + [f"companion.{info.name}" for info in pkgutil.iter_modules(companion.__path__) if info.name != "data"]
    + [f"companion.data.{info.name}" for info in pkgutil.iter_modules(companion.data.__path__)]
)


def public_objects() -> dict[str, object]:
    """Functions and classes that a module defines (not imports) and does not mark private with a leading _."""
    found = {}
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        names = set(getattr(module, "__all__", ())) | {name for name in vars(module) if not name.startswith("_")}
        for name in sorted(names):
            obj = inspect.unwrap(getattr(module, name))  # functools.lru_cache keeps the function as __wrapped__
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__.startswith("companion"):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return found


def public_methods() -> dict[str, object]:
    found = {}
    for qualified, cls in public_objects().items():
        if not inspect.isclass(cls):
            continue
        for name, member in vars(cls).items():
            if name.startswith("_"):
                continue
            function = member.fget if isinstance(member, property) else getattr(member, "__func__", member)
            if inspect.isfunction(function):
                found[f"{qualified}.{name}"] = function
    return found


OBJECTS = public_objects()
METHODS = public_methods()

# Public methods that have no docstring yet: each test below fails on purpose until the docstring is written.


def missing_annotations(function) -> list[str]:
    signature = inspect.signature(function)
    missing = [
        name
        for name, parameter in signature.parameters.items()
        if name not in ("self", "cls") and parameter.annotation is inspect.Parameter.empty
    ]
    if signature.return_annotation is inspect.Signature.empty and function.__name__ != "__init__":
        missing.append("return")
    return missing


def test_the_inventory_is_not_empty():
    assert len(OBJECTS) > 40
    assert "companion.training.Trainer" in OBJECTS
    assert "companion.metrics.corpus_bleu" in OBJECTS
    assert "companion.training.Trainer.fit" in METHODS
    assert "companion.data.corpora.wikipedia_articles" in OBJECTS  # behind functools.lru_cache


@pytest.mark.parametrize("module", [companion, companion.data], ids=lambda module: module.__name__)
def test_everything_in_all_exists_once(module):
    assert all(hasattr(module, name) for name in module.__all__)
    assert len(set(module.__all__)) == len(module.__all__)


def test_version_matches_pyproject():
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert companion.__version__ == pyproject["project"]["version"]


@pytest.mark.parametrize("name", sorted(OBJECTS))
def test_public_function_or_class_has_a_docstring_and_type_hints(name):
    obj = OBJECTS[name]
    doc = obj.__doc__ or ""
    assert doc.strip(), f"{name} has no docstring"
    assert not doc.startswith(f"{obj.__name__}("), f"{name} has only the signature dataclasses write as a docstring"
    function = obj.__init__ if inspect.isclass(obj) else obj
    if inspect.isfunction(function):  # a class without its own __init__ has nothing to annotate
        assert not missing_annotations(function), f"{name} lacks type hints for {missing_annotations(function)}"


@pytest.mark.parametrize("name", sorted(METHODS))
def test_public_method_has_a_docstring_and_type_hints(name):
    function = METHODS[name]
    assert not missing_annotations(function), f"{name} lacks type hints for {missing_annotations(function)}"
    assert (function.__doc__ or "").strip(), f"{name} has no docstring"


# COURSE.md section 3: model modules, in teaching order, never import data, training or decoding (so a model can be
# read, and reused, without the pipeline around it), nor a model module that comes later.
MODEL_MODULES = [
    "recurrent_cells",
    "gated_cells",
    "language_models",
    "seq2seq",
    "masks",
    "attention",
    "attention_seq2seq",
    "positions",
    "transformer",
    "pretraining",
    "modern_recurrent",
]
PIPELINE = {"data", "training", "decoding"}


def companion_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("companion."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {alias.name.split(".")[1] for alias in node.names if alias.name.startswith("companion.")}
    return found


@pytest.mark.parametrize("name", [name for name in MODEL_MODULES if (COMPANION / f"{name}.py").exists()])
def test_a_model_module_never_imports_the_pipeline_or_a_later_model(name):
    later = set(MODEL_MODULES[MODEL_MODULES.index(name) + 1 :]) - {"masks"}  # masks serve every model
    imported = companion_imports(COMPANION / f"{name}.py")
    assert not imported & (PIPELINE | later), f"companion/{name}.py imports {sorted(imported & (PIPELINE | later))}"
