"""Layer rules import-linter cannot express (DESIGN.md, "Parts"), checked on the syntax tree.

- Routes are thin: no module named ``routes.py`` or ``*_routes.py`` builds SQL
  (``select``/``insert``/``update``/``delete``/``text`` from SQLAlchemy) or runs it
  (``.execute``/``.scalar``/``.scalars``/``.stream`` on a session): they call a service.
- Services never import FastAPI: no ``service.py`` imports ``fastapi`` or ``starlette``.

Usage: ``python tools/check_layers.py [ROOT]`` (default ``src/tollgate``). Prints one line per
violation, ``path:line: code message``, and exits 1 when there is any.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SQL_BUILDERS = frozenset({"select", "insert", "update", "delete", "text"})
"""SQLAlchemy's statement constructors: building a statement is the service's work."""

SQL_RUNNERS = frozenset({"execute", "scalar", "scalars", "stream", "stream_scalars"})
"""Session methods that run a statement."""

WEB_FRAMEWORKS = frozenset({"fastapi", "starlette"})
"""Top-level packages a service must not depend on: it is called by routes, jobs and the CLI."""

DEFAULT_ROOT = Path("src/tollgate")


@dataclass(frozen=True)
class Violation:
    """One broken rule at one place."""

    path: Path
    line: int
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.code} {self.message}"


def is_routes_module(path: Path) -> bool:
    """Whether ``path`` holds routes (``routes.py`` or ``<feature>_routes.py``)."""
    return path.name == "routes.py" or path.name.endswith("_routes.py")


def is_service_module(path: Path) -> bool:
    """Whether ``path`` is a part's service module."""
    return path.name == "service.py"


def _top_package(module: str) -> str:
    return module.split(".", 1)[0]


def sql_in_routes(path: Path, tree: ast.AST) -> Iterator[Violation]:
    """SQL built or run in a routes module."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and _top_package(node.module or "") == "sqlalchemy":
            for alias in node.names:
                if alias.name in SQL_BUILDERS:
                    yield Violation(
                        path, node.lineno, "L001", f"routes import sqlalchemy {alias.name}"
                    )
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            name = node.func.attr
            owner = node.func.value
            if name in SQL_RUNNERS:
                yield Violation(path, node.lineno, "L002", f"routes run SQL (.{name})")
            elif (
                name in SQL_BUILDERS
                and isinstance(owner, ast.Name)
                and owner.id in {"sqlalchemy", "sa"}
            ):
                yield Violation(path, node.lineno, "L001", f"routes build SQL ({owner.id}.{name})")


def web_framework_in_service(path: Path, tree: ast.AST) -> Iterator[Violation]:
    """A FastAPI or Starlette import in a service module."""
    for node in ast.walk(tree):
        modules: list[str] = []
        if not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        for module in modules:
            if _top_package(module) in WEB_FRAMEWORKS:
                yield Violation(path, node.lineno, "L003", f"service imports {module}")


def check_file(path: Path) -> list[Violation]:
    """Every violation in one file (nothing for modules the rules do not cover)."""
    if not (is_routes_module(path) or is_service_module(path)):
        return []
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    if is_routes_module(path):
        return list(sql_in_routes(path, tree))
    return list(web_framework_in_service(path, tree))


def check_tree(root: Path) -> list[Violation]:
    """Every violation under ``root``, in path order."""
    found: list[Violation] = []
    for path in sorted(root.rglob("*.py")):
        found.extend(check_file(path))
    return found


def main(argv: list[str]) -> int:
    """Check the tree named on the command line; 1 when a rule is broken."""
    root = Path(argv[1]) if len(argv) > 1 else DEFAULT_ROOT
    if not root.is_dir():
        print(f"check_layers: no such directory: {root}", file=sys.stderr)
        return 2
    violations = check_tree(root)
    for violation in violations:
        print(violation)
    if violations:
        print(f"check_layers: {len(violations)} violation(s) under {root}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
