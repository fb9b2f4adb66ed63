import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
BUILD = pathlib.Path(os.environ.get("BUILD", ROOT / "build"))
SHARED = ROOT.parent / "shared"


@pytest.fixture(scope="session")
def llmfile():
    exe = BUILD / "llmfile"
    assert exe.exists(), f"{exe} missing: run `make` first"
    return exe
