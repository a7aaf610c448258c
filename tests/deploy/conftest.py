"""The project as an integrator gets it: a wheel built from pyproject.toml, installed into a fresh
virtualenv outside the checkout. The virtualenv borrows this one's third-party packages through a
``.pth`` line (no network, seconds to set up); ``.pth`` files inside that folder, such as the editable
install's, are not read, so ``loyaltysync`` can only come from the wheel."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class InstalledWheel:
    wheel: Path
    venv: Path
    python: Path
    workdir: Path

    def bin(self, name: str) -> Path:
        return self.venv / "bin" / name

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a process of the installed package: nothing points into the checkout."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTHON", "VIRTUAL_ENV"))}
        env.update(
            PATH=f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
            DJANGO_SETTINGS_MODULE="loyaltysync.settings",
            VAR_DIR=str(self.workdir / "var"),
            PYTHONUNBUFFERED="1",
        )
        env.update(extra)
        return env

    def run(self, *args: str | Path, env: dict[str, str] | None = None, timeout: float = 300):
        return subprocess.run(
            [str(a) for a in args], cwd=self.workdir, env=env or self.env(), capture_output=True, text=True,
            timeout=timeout,
        )


@pytest.fixture(scope="session")
def installed_wheel(tmp_path_factory) -> InstalledWheel:
    root = tmp_path_factory.mktemp("wheel")
    # Built from a copy: setuptools reuses build/ in the source tree, where files of earlier builds linger.
    source = root / "source"
    shutil.copytree(CHECKOUT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "var", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache",
        ".hypothesis", "bench", "docs", "tests",
    ))
    dist = root / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--wheel-dir", dist,
         source],
        check=True, capture_output=True, text=True, timeout=300,
    )
    (wheel,) = dist.glob("loyaltysync-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip())
    (site / "borrowed-test-packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", wheel],
        check=True, capture_output=True, text=True, timeout=300,
    )
    workdir = root / "work"
    workdir.mkdir()
    return InstalledWheel(wheel=wheel, venv=venv, python=python, workdir=workdir)


def database_url() -> str:
    """The test database as a URL a child process can use."""
    from django.db import connection

    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    """``manage.py`` of the checkout in a child process, with ``env`` on top of this one's environment."""
    return subprocess.run(
        [sys.executable, str(CHECKOUT / "manage.py"), *args],
        cwd=CHECKOUT, env={**os.environ, "PYTHONUNBUFFERED": "1", **env}, capture_output=True, text=True,
        timeout=120,
    )
