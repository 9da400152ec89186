"""Shared test fixtures: the original implementation's reference outputs.

``tests/fixtures/reference`` is a copy of ``shared/reference`` (conversion/pack_reference_fixtures.py),
so the suite passes on a plain clone; ``TADA_ZOO_REFERENCE`` points the tests at another copy.
"""
import importlib.util
import json
import os
from pathlib import Path

import pytest
import torch

REFERENCE_DIR = Path(os.environ.get("TADA_ZOO_REFERENCE", Path(__file__).resolve().parent / "fixtures" / "reference"))


def _fill_module():
    if not (REFERENCE_DIR / "fill.py").exists():
        raise FileNotFoundError(
            f"reference fixtures not found at {REFERENCE_DIR}; run conversion/pack_reference_fixtures.py "
            "or set TADA_ZOO_REFERENCE to shared/reference")
    spec = importlib.util.spec_from_file_location("reference_fill", REFERENCE_DIR / "fill.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Reference:
    """One folder of ../shared/reference: original weights, input and expected outputs."""

    def __init__(self, name: str):
        from safetensors.torch import load_file

        self.dir = REFERENCE_DIR / name
        self.fill = _fill_module()
        self.meta = json.loads((self.dir / "meta.json").read_text())
        self.manifest = self.fill.load_manifest(self.dir / "manifest.json")
        self.expected = load_file(self.dir / "expected_seed0.safetensors")

    def state_dict(self, seed: int = 0):
        return self.fill.fill_state_dict(self.manifest, seed)

    def input(self, shape=None, seed: int = 0) -> torch.Tensor:
        x = self.fill.reference_input(shape or self.meta["input_shape"], seed)
        if shape is None:
            assert self.fill.tensor_sha256(x) == self.meta["input_sha256"], "regenerated input differs"
        return x

    def checkpoint(self, seed: int = 0) -> dict:
        """A synthetic checkpoint in the original code's ``.pyth`` format."""
        cfg = self.dir / "config_merged.json"
        return self.fill.original_checkpoint(self.manifest, seed, cfg.read_text() if cfg.exists() else None)


@pytest.fixture(scope="session")
def reference():
    """``reference("tada2d_r50_k400")`` -> Reference."""
    return Reference


@pytest.fixture(autouse=True, scope="session")
def _empty_weights_folder(tmp_path_factory):
    """Tests never see the developer's own ``~/.cache/tada_zoo`` (converted or original weights there
    would turn the "weights missing" tests into loads)."""
    old = os.environ.get("TADA_ZOO_HOME")
    os.environ["TADA_ZOO_HOME"] = str(tmp_path_factory.mktemp("tada_zoo_home"))
    yield
    if old is None:
        os.environ.pop("TADA_ZOO_HOME", None)
    else:
        os.environ["TADA_ZOO_HOME"] = old
