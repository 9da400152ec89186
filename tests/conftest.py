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


# ---- the long tests: `make test` leaves them out, `make test-slow` runs them, CI runs both -------------
# Each is long because of what it proves: docs pages that train, convert and export as a reader would,
# full-size checkpoints converted and compared with the original's outputs (one per family stays in
# `make test`), exports and compiles of every family, real multi-process runs and killed processes.
SLOW = (
    "tests/test_docs.py::test_doc_blocks_run[README.md]",
    "tests/test_docs.py::test_doc_blocks_run[deploy.md]",
    "tests/test_docs.py::test_doc_blocks_run[training.md]",
    "tests/test_docs.py::test_doc_blocks_run[features.md]",
    "tests/test_docs.py::test_readme_parameter_counts_are_the_models",
    "tests/test_hub.py::test_hub_configs_match_the_registry",
    "tests/test_hub.py::test_hub_configs_content",
    "tests/test_hub.py::test_publish_dry_run_then_load_offline_from_hf_cache",
    "tests/test_convert.py::test_cli_conversion_reproduces_original_logits",
    "tests/test_tadaformer.py::test_l14_matches_original",
    "tests/test_tadaformer.py::test_b16_ssv2_matches_original",
    "tests/test_tadaconvnext.py::test_v2_reference_outputs[s-small]",
    "tests/test_tadaconvnext.py::test_v2_reference_outputs[b-base]",
    "tests/test_slowfast.py::test_original_checkpoint_reproduces_reference[slowfast_8x8_k400-slowfast_r50_8x8]",
    "tests/test_tada2d.py::test_paper_sizes",
    "tests/test_resnet3d.py::test_inflate_timm_resnet50_into_r3d_and_r2plus1d",
    "tests/test_export.py::test_export_dynamic_batch_matches_eager",
    "tests/test_export.py::test_tadaformer_at_another_size_exports_with_both_onnx_exporters",
    "tests/test_export.py::test_compile_one_graph_and_no_recompile_for_a_new_batch_size",
    "tests/test_engine_train.py::test_cli_killed_mid_run_resumes_identically",
    "tests/test_distributed.py::test_torchrun_extraction_deals_videos_out_and_merges_the_index",
    "tests/test_distributed.py::test_torchrun_two_processes_stay_in_sync",
    "tests/test_shards.py::test_torchrun_two_ranks_two_workers_read_every_video_once",
    "tests/test_multinode.py::test_two_nodes_train_like_one_node_with_two_processes",
    "tests/test_multinode.py::test_two_nodes_train_what_one_process_trains_with_the_same_global_batch",
    "tests/test_multinode.py::test_two_nodes_evaluate_like_one_process_each_video_once",
    "tests/test_multinode.py::test_two_nodes_extract_resumes_after_a_node_is_killed",
    "tests/test_multinode.py::test_an_output_folder_that_differs_per_node_is_one_line",
    "tests/test_data_datasets.py::test_worker_processes_count_skipped_videos",
    "tests/test_op_counts.py",
    "tests/test_profile.py::test_unknown_model_is_a_clear_error",
    "tests/test_profile.py::test_profile_cli_prints_params_and_gflops",
    "tests/test_serve.py::test_page_in_a_real_browser",
)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long by what it proves (conftest.SLOW); `make test-slow` runs them")


def pytest_collection_modifyitems(config, items):
    """Mark the tests SLOW names (a test id, or its prefix: every parameter of a test, every test of a file)."""
    unused = set(SLOW)
    for item in items:
        for entry in SLOW:
            if item.nodeid == entry or item.nodeid.startswith(entry + "[") or item.nodeid.startswith(entry + "::"):
                item.add_marker(pytest.mark.slow)
                unused.discard(entry)
    full_run = not config.getoption("keyword") and len({i.nodeid.split("::")[0] for i in items}) > 20
    if full_run and unused:  # a renamed test would silently move back into `make test`
        raise pytest.UsageError(f"conftest.SLOW names tests that do not exist: {sorted(unused)}")
