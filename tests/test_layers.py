"""The layer checks of ``make lint`` fail on a broken rule and pass on the real tree.

Both run as ``make lint`` runs them, as commands: ``lint-imports`` with the contracts of
``pyproject.toml`` (import directions) and ``tools/check_layers.py`` (no SQL in routes, no
FastAPI in services), first on a small tree written here, then on ``src/tollgate``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECKER = ROOT / "tools" / "check_layers.py"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"

PARTS = ("core", "identity", "accounts", "broker", "gateway", "data", "analytics", "chat")
WIRING = ("app", "cli", "client", "models", "migrate", "web")

CLEAN_TREE = {
    "core/settings.py": "import json\n",
    "identity/models.py": "from tollgate.core import settings\n",
    "identity/service.py": "from tollgate.identity import models\n",
    "identity/routes.py": "from tollgate.identity import service\n",
    "accounts/models.py": "from tollgate.core import settings\n",
    "accounts/service.py": (
        "from tollgate.accounts import models\nfrom tollgate.identity import service\n"
    ),
    "broker/service.py": "from tollgate.core import settings\n",
    "analytics/service.py": "from tollgate.core import settings\n",
    "data/service.py": "from tollgate.identity import service\n",
    "chat/service.py": "from tollgate.identity import service\n",
    "gateway/service.py": (
        "from tollgate.accounts import service as accounts\n"
        "from tollgate.analytics import service as analytics\n"
        "from tollgate.broker import service as broker\n"
    ),
    "gateway/routes.py": (
        "from fastapi import APIRouter\n\nfrom tollgate.gateway import service\n"
        "router = APIRouter()\n"
    ),
    "app.py": "from tollgate.data import service\nfrom tollgate.gateway import routes\n",
}
"""A miniature Tollgate that keeps every rule."""


def write_tree(base: Path, overrides: dict[str, str]) -> Path:
    """Write the miniature package under ``base`` (with ``overrides``); return its root."""
    package = base / "tollgate"
    files = {"__init__.py": ""}
    files |= {f"{part}/__init__.py": "" for part in PARTS}
    files |= {f"{name}.py": "" for name in WIRING}
    files |= {
        f"{part}/{layer}.py": "" for part in PARTS[1:] for layer in ("models", "service", "routes")
    }
    files |= CLEAN_TREE | overrides
    for name, text in files.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return package


def lint_imports(cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` with this project's contracts, the package found on ``pythonpath``."""
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", str(ROOT / "pyproject.toml")],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def check_layers(root: Path) -> subprocess.CompletedProcess[str]:
    """``tools/check_layers.py`` on ``root``."""
    return subprocess.run(
        [sys.executable, str(CHECKER), str(root)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_import_contracts_pass_on_a_tree_that_keeps_the_directions(tmp_path: Path) -> None:
    write_tree(tmp_path, {})
    result = lint_imports(tmp_path, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout


@pytest.mark.parametrize(
    ("module", "source", "contract"),
    [
        ("core/settings.py", "from tollgate.identity import models\n", "core imports no part"),
        (
            "analytics/service.py",
            "from tollgate.broker import service\n",
            "analytics imports no other part",
        ),
        ("data/service.py", "from tollgate.gateway import service\n", "data uses core and"),
        ("data/service.py", "from tollgate.accounts import service\n", "data uses core and"),
        ("chat/service.py", "from tollgate.gateway import service\n", "chat uses core and"),
        ("broker/service.py", "from tollgate.accounts import service\n", "broker uses core"),
        ("identity/service.py", "from tollgate.broker import service\n", "identity uses core"),
        ("gateway/service.py", "from tollgate import app\n", "no part imports the wiring"),
        (
            "gateway/service.py",
            "from tollgate.accounts import models\n",
            "gateway reaches accounts, broker and analytics through",
        ),
        ("identity/models.py", "from tollgate.identity import service\n", "inside a part"),
        ("identity/service.py", "from tollgate.identity import routes\n", "inside a part"),
    ],
)
def test_import_contracts_fail_on_a_forbidden_import(
    tmp_path: Path, module: str, source: str, contract: str
) -> None:
    write_tree(tmp_path, {module: source})
    result = lint_imports(tmp_path, tmp_path)
    assert result.returncode != 0
    broken = [line for line in result.stdout.splitlines() if line.endswith(" BROKEN")]
    assert any(line.startswith(contract) for line in broken), result.stdout
    importer = "tollgate." + module.removesuffix(".py").replace("/", ".")
    assert f" {importer} -> " in result.stdout


def test_import_contracts_pass_on_the_real_tree() -> None:
    result = lint_imports(ROOT, ROOT / "src")
    assert result.returncode == 0, result.stdout + result.stderr


def test_layer_check_passes_on_routes_that_call_a_service(tmp_path: Path) -> None:
    package = write_tree(tmp_path, {})
    result = check_layers(package)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        (
            "gateway/routes.py",
            "from sqlalchemy import select\n",
            "gateway/routes.py:1: L001 routes import sqlalchemy select",
        ),
        (
            "broker/organization_routes.py",
            "from sqlalchemy.sql import text\n",
            "broker/organization_routes.py:1: L001 routes import sqlalchemy text",
        ),
        (
            "gateway/routes.py",
            "import sqlalchemy as sa\n\n\ndef build():\n    return sa.delete(None)\n",
            "gateway/routes.py:5: L001 routes build SQL (sa.delete)",
        ),
        (
            "gateway/routes.py",
            "async def handler(session, statement):\n    await session.execute(statement)\n",
            "gateway/routes.py:2: L002 routes run SQL (.execute)",
        ),
        (
            "gateway/routes.py",
            "async def handler(session, statement):\n    return await session.scalars(statement)\n",
            "gateway/routes.py:2: L002 routes run SQL (.scalars)",
        ),
        (
            "accounts/service.py",
            "from fastapi import HTTPException\n",
            "accounts/service.py:1: L003 service imports fastapi",
        ),
        (
            "data/service.py",
            "import starlette.requests\n",
            "data/service.py:1: L003 service imports starlette.requests",
        ),
    ],
)
def test_layer_check_fails_on_sql_in_routes_and_fastapi_in_services(
    tmp_path: Path, module: str, source: str, expected: str
) -> None:
    package = write_tree(tmp_path, {module: source})
    result = check_layers(package)
    assert result.returncode == 1
    assert result.stdout.splitlines() == [f"{package}/{expected}"]


def test_layer_check_passes_on_the_real_tree() -> None:
    result = check_layers(ROOT / "src" / "tollgate")
    assert result.returncode == 0, result.stdout + result.stderr
