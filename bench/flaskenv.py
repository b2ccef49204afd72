"""The Flask reference's own virtual environment, outside the repository's tracked files and outside shared/.

Built once from the reference's requirements.txt into bench/.venv-flask (git-ignored) and rebuilt when that
file changes; ~20 s.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

VENV = Path(__file__).resolve().parent / ".venv-flask"


def ensure(reference_dir: Path, log=print) -> Path:
    """The venv's bin/ folder, created or refreshed as needed."""
    requirements = reference_dir / "requirements.txt"
    if not requirements.exists():
        raise FileNotFoundError(
            f"the Flask reference is not at {reference_dir} (expected ../shared/reference/flask-seed)"
        )
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
    stamp = VENV / ".requirements.sha256"
    if stamp.exists() and stamp.read_text() == digest and (VENV / "bin" / "gunicorn").exists():
        return VENV / "bin"
    log(f"creating the Flask reference's venv in {VENV} from {requirements} ...")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    subprocess.run(
        [str(VENV / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", "-r", str(requirements)],
        check=True,
    )
    stamp.write_text(digest)
    return VENV / "bin"
