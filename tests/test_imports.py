"""Importing any module has no side effects: no argv parsing, no files, no env needed (STYLE 8)."""
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import faceforget


def _modules() -> list[str]:
    root = Path(faceforget.__file__).parent
    return sorted(m.name for m in pkgutil.walk_packages([str(root)], prefix="faceforget."))


def test_every_module_imports_cleanly_in_a_bare_subprocess(tmp_path):
    modules = _modules()
    assert "faceforget.unlearn.engine" in modules and "faceforget.cli" in modules
    code = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\nprint('ok')"
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "MPLCONFIGDIR": str(home / "mpl")}
    done = subprocess.run([sys.executable, "-c", code, *modules], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
    assert list(cwd.iterdir()) == []  # nothing written to the working directory on import


def test_modules_stay_small():
    root = Path(faceforget.__file__).parent
    big = {str(p.relative_to(root)): n for p in root.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert not big, f"modules over 400 lines: {big}"


def test_no_unsafe_deserialisation_in_sources():
    root = Path(faceforget.__file__).parent
    text = "\n".join(p.read_text() for p in root.rglob("*.py"))
    assert "pickle.load" not in text and "weights_only=False" not in text and "allow_pickle=True" not in text


def test_only_the_engine_steps_optimisers():
    root = Path(faceforget.__file__).parent / "unlearn"
    offenders = [p.name for p in root.rglob("*.py") if p.name not in ("engine.py", "heads.py")
                 and (".backward(" in p.read_text() or ".step(" in p.read_text())]
    assert not offenders
