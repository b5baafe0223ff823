"""Shared test fixtures. Tests never touch the network: HF_HUB_OFFLINE is forced here too.

Shared data (public data sets, never copied into the repo) are looked for in the folder named by the environment
variable HICRA_SHARED_DATA when it is set, else in ../shared/data beside the checkout. Tests that need them fail
(not skip) when the folder is missing, naming where they looked."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
# Public data sets: $HICRA_SHARED_DATA, else ../shared/data beside the checkout
SHARED_DATA = Path(os.environ["HICRA_SHARED_DATA"]) if os.environ.get("HICRA_SHARED_DATA") else \
    REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        where = "HICRA_SHARED_DATA" if os.environ.get("HICRA_SHARED_DATA") else \
            "../shared/data beside the checkout; set HICRA_SHARED_DATA to use another folder"
        pytest.fail(f"shared data not found at {SHARED_DATA} (from {where})")
    return SHARED_DATA


@pytest.fixture(scope="session")
def benchmark_script():
    """benchmark_script(NAME) -> the module of benchmarks/NAME.py (the benchmarks are scripts, not a package), so a
    test can call its functions and its `main`."""
    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "benchmarks" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    return load
