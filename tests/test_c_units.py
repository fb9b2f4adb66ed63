"""Runs every C unit test binary (plain and ASan/UBSan builds) as one pytest case each."""
import subprocess

import pytest

from conftest import BUILD, ROOT

BINARIES = sorted(p for d in ("tests", "san-tests") for p in (BUILD / d).rglob("test_*")
                  if p.is_file() and not p.suffix)


@pytest.mark.parametrize("binary", BINARIES, ids=lambda p: str(p.relative_to(BUILD)))
def test_c_unit(binary):
    proc = subprocess.run([str(binary)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{binary} failed:\n{proc.stdout}\n{proc.stderr}"


def test_c_units_were_built():
    assert BINARIES, "no C test binaries under build/: run `make tests`"
