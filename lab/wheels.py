"""The wheelhouse for the machines' Salt: salt and the modules' deps, built on the host.

Same pins as the repository's own venv (scripts/bootstrap-venv.sh): the runtime
dependencies of pyproject.toml, constrained by requirements/constraints.txt, then
protobuf==3.20.3 on its own (etcd3 0.12 needs protobuf<4; see README). salt 3008.4 is an
sdist, so it is built here; host and machines are both CPython 3.11, so the wheels fit.
pip reads the host's own index settings (pip.conf, PIP_* variables).
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import tomllib
from pathlib import Path

from lab.config import CACHE, REPO
from lab.run import run, step

PYPROJECT = REPO / "pyproject.toml"
CONSTRAINTS = REPO / "requirements" / "constraints.txt"
PROTOBUF_PIN = "protobuf==3.20.3"  # installed last, without dependencies (as bootstrap-venv.sh)


def pins() -> list[str]:
    """The runtime requirements of pyproject.toml ([project] dependencies), as written."""
    return list(tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"])


def recipe() -> str:
    """Everything that decides the wheelhouse's content."""
    return "\n".join([*pins(), PROTOBUF_PIN, CONSTRAINTS.read_text(), sys.version.split()[0][:4]])


def wheelhouse() -> Path:
    """Build (once per recipe) and return the directory of wheels."""
    key = hashlib.sha256(recipe().encode()).hexdigest()[:16]
    out = CACHE / "wheels" / key
    if (out / ".complete").exists():
        return out
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    pip = [sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(tmp)]
    with step("building wheels for the machines' Salt (salt is an sdist)"):
        run([*pip, "-c", str(CONSTRAINTS), *pins()], timeout=1200)
        run([*pip, "--no-deps", PROTOBUF_PIN], timeout=600)
    (tmp / "requirements.txt").write_text("\n".join(pins()) + "\n")
    (tmp / ".complete").write_text(recipe())
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out
