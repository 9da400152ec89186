"""Dispatched ops per eval forward against the 2D baselines (issue #15, item 5).

Op counts are deterministic (they depend on the code path, not on timing), so the goals
are tested: TAda2D / TSN <= 2.7 (2.0 before TSN's own block lost 80 ops, issue 21), TAdaConvNeXtV2-T /
ConvNeXt-T <= 3.0 (counting rule:
``benchmarks/op_counts.top_level_ops``).
"""
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from op_counts import GOALS, build_pairs, count_ops, top_level_ops  # noqa: E402


@pytest.fixture(scope="module")
def counts():
    return {name: sum(count_ops(m, x).values()) for name, (m, x) in build_pairs(size=32).items()}


def test_counting_rule_counts_only_python_dispatched_ops():
    x = torch.randn(4, 8)
    w = torch.randn(3, 8)
    # linear dispatches addmm / t internally: one op; the add is a second
    c = top_level_ops(lambda: torch.nn.functional.linear(x, w) + 1)
    assert sum(c.values()) == 2 and c["aten::linear"] == 1


def test_tada2d_op_ratio(counts):
    base, goal = GOALS["tada2d_r50_8f"]
    assert counts["tada2d_r50_8f"] <= goal * counts[base], counts


def test_tadaconvnextv2_op_ratio(counts):
    base, goal = GOALS["tadaconvnextv2_t_16f"]
    assert counts["tadaconvnextv2_t_16f"] <= goal * counts[base], counts
