"""File = kind: every registered part lives in the file (or package folder) named after its kind and has a docstring,
and the two tables that name the parts, the kinds table of ``streamad/operators/__init__.py`` and the parts table of
README.md ("pipeline.yaml, walked through"), agree with the registries and name files that exist.

| registry | where a kind must be defined |
|---|---|
| operators | ``streamad/operators/<kind>.py`` |
| sinks | ``streamad/sinks/<kind>.py`` |
| sources | ``streamad/sources/<kind>.py``; dataset kinds in any file under ``streamad/sources/datasets/`` |
| image models | the package ``streamad/models/image/<kind>/`` |
| video models | the package ``streamad/models/video/<kind>/`` |
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

import streamad.operators
from streamad.builtin import load_builtin_parts
from streamad.registry import IMAGE_MODELS, OPERATORS, SINKS, SOURCES, VIDEO_MODELS, Registry

REPO = Path(__file__).resolve().parents[2]
PACKAGE = Path(streamad.operators.__file__).resolve().parents[1]  # the streamad/ that is imported

load_builtin_parts()
REGISTRIES = {"operators": OPERATORS, "sources": SOURCES, "sinks": SINKS, "video_models": VIDEO_MODELS,
              "image_models": IMAGE_MODELS}


def source_file(cls: type) -> str:
    """The file defining ``cls``, relative to the repository (``streamad/operators/clip_window.py``)."""
    path = inspect.getsourcefile(cls)
    assert path, f"{cls.__module__}.{cls.__qualname__} has no source file"
    return Path(path).resolve().relative_to(PACKAGE.parent).as_posix()


def expected_place(family: str, kind: str, path: str) -> str | None:
    """What is wrong with ``kind`` of ``family`` defined in ``path`` (None when it is in its place)."""
    if family in ("operators", "sinks"):
        want = f"streamad/{family}/{kind}.py"
        return None if path == want else f"should be defined in {want}"
    if family == "sources":
        if path == f"streamad/sources/{kind}.py" or path.startswith("streamad/sources/datasets/"):
            return None
        return f"should be defined in streamad/sources/{kind}.py (or, a dataset, under streamad/sources/datasets/)"
    folder = f"streamad/models/{family.split('_')[0]}/{kind}/"
    if path.startswith(folder) and (PACKAGE.parent / folder / "__init__.py").is_file():
        return None
    return f"should be defined in the package {folder}"


@pytest.mark.parametrize("family", list(REGISTRIES))
def test_every_kind_lives_in_the_file_of_its_name_and_has_a_docstring(family: str) -> None:
    registry: Registry = REGISTRIES[family]
    assert registry.items(), f"no {family} registered: load_builtin_parts() imported nothing"
    problems = []
    for kind, cls in registry.items():
        path = source_file(cls)
        wrong = expected_place(family, kind, path)
        if wrong:
            problems.append(f"{family} kind {kind!r} ({cls.__qualname__}) is in {path}: {wrong}")
        if not (cls.__dict__.get("__doc__") or "").strip():  # its own docstring, not one inherited
            problems.append(f"{family} kind {kind!r}: {cls.__module__}.{cls.__qualname__} has no docstring")
    assert not problems, "\n".join(problems)


def table_rows(text: str) -> list[list[str]]:
    """The body rows of the first markdown table in ``text`` as lists of cells (header and rule left out)."""
    rows, started = [], False
    for line in text.splitlines():
        if line.startswith("|"):
            started = True
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif started:
            break
    assert len(rows) > 2 and set(rows[1][0]) <= set("-: "), f"no markdown table in: {text[:200]!r}"
    return rows[2:]


def test_operator_docstring_table_lists_exactly_the_registered_operators() -> None:
    rows = table_rows(streamad.operators.__doc__ or "")
    listed = [k for row in rows for k in re.findall(r"``(\w+)``", row[0])]
    assert len(listed) == len(set(listed)), f"an operator is listed twice: {listed}"
    assert set(listed) == set(OPERATORS.names()), (
        f"streamad/operators/__init__.py table: missing {sorted(set(OPERATORS.names()) - set(listed))}, "
        f"not registered {sorted(set(listed) - set(OPERATORS.names()))}")


def readme_parts_table() -> list[tuple[list[str], list[str]]]:
    """``[(kinds, paths)]`` of README.md's parts table (columns ``kind | file | what``) in "pipeline.yaml, walked
    through": the names in backticks of the first and of the second column."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    start = readme.index("## pipeline.yaml, walked through")
    section = readme[start:readme.index("\n## ", start + 1)]
    header = section.index("| kind | file | what |")
    return [(re.findall(r"`([^`]+)`", row[0]), re.findall(r"`([^`]+)`", row[1]))
            for row in table_rows(section[header:])]


def expand(paths: list[str], kind: str) -> list[str]:
    """``paths`` with ``<kind>`` replaced by ``kind``."""
    return [p.replace("<kind>", kind) for p in paths]


def test_readme_parts_table_names_every_part_and_its_file() -> None:
    rows = readme_parts_table()
    assert rows, "README.md's parts table has no rows"
    problems = []
    for kinds, paths in rows:
        if not kinds or not paths:
            problems.append(f"row {kinds} / {paths}: needs kinds and paths in backticks")
        for kind in kinds:
            for path in expand(paths, kind):
                if not (REPO / path).exists():
                    problems.append(f"README names {path} (row of {kind!r}), which does not exist")
    registered = {kind for reg in REGISTRIES.values() for kind in reg.names()}
    for kinds, _ in rows:
        for kind in kinds:
            if kind not in registered:
                problems.append(f"README lists kind {kind!r}, which is not registered (a deprecated alias?)")
    for family in ("operators", "sources", "sinks", "video_models", "image_models"):
        for kind, cls in REGISTRIES[family].items():
            path = source_file(cls)
            named = [p for kinds, paths in rows if kind in kinds for p in expand(paths, kind)]
            if not named:
                problems.append(f"README's parts table does not list the {family} kind {kind!r} ({path})")
            elif not any(p == path or (family.endswith("models") and p.endswith("/") and path.startswith(p))
                         for p in named):  # a model is a package folder; other parts are named by their file
                problems.append(f"README's parts table gives {named} for the {family} kind {kind!r}, defined in {path}")
    assert not problems, "\n".join(problems)
