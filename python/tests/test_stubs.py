"""The type stubs agree with the compiled extension (mypy's stubtest), and
an editor's checker flags a misspelt filter or group key with them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]


def mypy(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    ini = tmp_path / "mypy.ini"
    ini.write_text("[mypy]\nignore_missing_imports = True\n")
    return subprocess.run(
        [sys.executable, "-m", *args, "--config-file" if args[0] == "mypy" else "--mypy-config-file", str(ini)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(PACKAGE), "MYPYPATH": str(PACKAGE), "PATH": "/usr/bin:/bin"},
    )


def test_stubs_match_the_extension(tmp_path):
    p = mypy(tmp_path, "mypy.stubtest", "n4a._n4a")
    assert p.returncode == 0, p.stdout + p.stderr


def test_a_checker_flags_misspelt_keywords(tmp_path):
    (tmp_path / "use.py").write_text(
        "import n4a\n"
        "ws = n4a.Workspace('x')\n"
        "ws.query(partition='val', metric=['mse'], sort='val_score:asc', limit=5)\n"
        "ws.query(modle='PLS')\n"
        "ws.stats('colour')\n"
        "n4a.Writer('x', 'corn', directions={'m': 'upwards'})\n"
    )
    p = mypy(tmp_path, "mypy", "use.py")
    out = p.stdout
    assert 'Unexpected keyword argument "modle"' in out, out
    assert ':5: error' in out and "'colour'" in out, out
    assert ':6: error' in out, out
    assert ":3: error" not in out, out
