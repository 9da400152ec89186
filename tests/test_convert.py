"""`tada-zoo convert`: original checkpoints reproduce the original code's outputs; bad input fails cleanly."""
import json
import os
from pathlib import Path

import pytest
import timm
import torch

import tada_zoo  # noqa: F401
from tada_zoo.cli import main as cli
from tada_zoo.models import read_checkpoint


@pytest.fixture(scope="module")
def originals(tmp_path_factory, reference):
    """Original-format .pyth files built from the reference manifests (weights = fill.py)."""
    d = tmp_path_factory.mktemp("originals")

    class Originals(dict):
        def __missing__(self, arch):
            self[arch] = d / f"{arch}.pyth"
            torch.save(reference(arch).checkpoint(), self[arch])
            return self[arch]

    return Originals()


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


# every released family: (reference folder, --model). Without a tag the class count comes
# from the checkpoint (174 for the SSV2 one); TSN has no release at all. A family whose
# model file is not merged yet is skipped; once it is, a name missing here fails. The
# largest models (L/14: 1.4-1.9 GB of weights) run with TADA_ZOO_FULL_REFERENCE=1.
REFERENCE_CASES = [
    ("tada2d_r50_k400", "tada2d_r50_8f.k400"),
    ("tada2d_r50_ssv2", "tada2d_r50_16f"),  # 8f/16f share the state dict; any T runs
    ("r2d_r50_k400", "tsn_r50_8f"),
    ("tadaconvnextv2_tiny_k400", "tadaconvnextv2_t_16f.k400"),
    ("tadaformer_b16_ssv2", "tadaformer_b16_16f.ssv2"),  # a different network from K400's
    ("slowfast_4x16_k400", "slowfast_r50_4x16"),  # no release: architectures without a tag
    ("slowfast_8x8_k400", "slowfast_r50_8x8"),
]
# ~30-45 s each on 2 cores; their key maps are also checked against the reference logits in
# test_tadaconvnext.py / test_tadaformer.py, so the full CLI round trip runs on request only
LARGE_REFERENCE_CASES = [
    ("tadaconvnextv2_base_k400", "tadaconvnextv2_b_16f.k400"),  # head_dim 64 (T/S: 48)
    ("tadaformer_b16_k400", "tadaformer_b16_16f.k400"),
    ("tadaconvnextv2_small_k400", "tadaconvnextv2_s_16f.k400"),
    ("tadaformer_l14_k400", "tadaformer_l14_16f.k400"),
    ("tadaformer_l14_ssv2", "tadaformer_l14_16f.ssv2"),
]
_LARGE = {name for _, name in LARGE_REFERENCE_CASES}


def _require_model(name: str):
    arch = name.split(".")[0]
    family = arch.split("_")[0]
    if not timm.is_model(arch):
        if timm.list_models(f"{family}_*"):
            pytest.fail(f"{family} models exist but not {arch}: update REFERENCE_CASES with its name")
        pytest.skip(f"{family} family not in this checkout")


@pytest.mark.parametrize("arch,name", REFERENCE_CASES + LARGE_REFERENCE_CASES)
def test_cli_conversion_reproduces_original_logits(arch, name, originals, reference, tmp_path):
    _require_model(name)
    if name in _LARGE and not os.environ.get("TADA_ZOO_FULL_REFERENCE"):
        pytest.skip("large model: set TADA_ZOO_FULL_REFERENCE=1")
    ref = reference(arch)
    out = tmp_path / "out"
    assert cli(["convert", "--model", name, "--checkpoint", str(originals[arch]), "--output", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]

    # a release loads by name + file; any conversion loads as a timm "local-dir:" model
    # (its config.json knows the class count)
    model = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    if "." in name:
        by_name = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(out / "model.safetensors")))
        assert all(torch.equal(a, b) for a, b in zip(by_name.state_dict().values(), model.state_dict().values()))
    assert model.num_classes == ref.meta["num_classes"]
    with torch.no_grad():
        features = model.forward_head(model.forward_features(ref.input()), pre_logits=True)
        logits = model.get_classifier()(features)
    assert _rel_err(logits, ref.expected["logits"]) <= 1e-4
    assert _rel_err(features, ref.expected["features"]) <= 1e-4

    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == name.split(".")[0] and config["num_classes"] == ref.meta["num_classes"]
    assert config["provenance"]["source_sha256"] == tada_zoo.weights.hub.sha256_file(originals[arch])
    card = (out / "README.md").read_text()
    assert config["provenance"]["converted_sha256"] in card
    assert tada_zoo.weights.hub.sha256_file(out / "model.safetensors") == config["provenance"]["converted_sha256"]
    assert "pipeline_tag: video-classification" in card


# ---- bad input: clear errors, nothing written ------------------------------------------

def _convert_fails(tmp_path, checkpoint, match, model="tada2d_r50_8f.k400", exc=ValueError):
    out = tmp_path / "out"
    with pytest.raises(exc, match=match):
        tada_zoo.weights.convert.convert_checkpoint(model, checkpoint, out)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")], "temporary output left behind"


def test_checkpoint_of_another_architecture(tmp_path, originals, reference):
    # TSN/R2D weights into TAda2D: the calibration and aggregation weights are missing
    _convert_fails(tmp_path, originals["r2d_r50_k400"], r"(?s)240 model keys .*missing.*BRANCH=R2D3DBranch")
    # another family altogether: its keys have no place in the model
    other = tmp_path / "convnext.pyth"
    torch.save(reference("tadaconvnextv2_tiny_k400").checkpoint(), other)
    _convert_fails(tmp_path, other, r"(?s)unmapped.*MODEL=TAdaConvNeXtV2-Tiny")


def test_checkpoint_of_another_dataset_or_clip_length(tmp_path, originals):
    _convert_fails(tmp_path, originals["tada2d_r50_k400"],
                   r"(?s)fc.weight \(400, 2048\) vs \(174, 2048\).*tada2d_r50_8f.ssv2 expects 174", "tada2d_r50_8f.ssv2")
    # 8x8 and 16x5 share the state dict: the config stored in the checkpoint tells them apart
    _convert_fails(tmp_path, originals["tada2d_r50_k400"],
                   r"num_frames=16 .* num_frames=8; releases that fit: tada2d_r50_8f.k400 \(", "tada2d_r50_16f.k400")


def test_truncated_checkpoint(tmp_path, originals):
    data = originals["r2d_r50_k400"].read_bytes()
    bad = tmp_path / "truncated.pyth"
    bad.write_bytes(data[: len(data) // 2])
    _convert_fails(tmp_path, bad, "truncated or corrupt")


class _Code:
    def __reduce__(self):  # unpickling would call a function: weights_only must refuse
        return (os.getcwd, ())


def test_pickle_with_code_is_refused(tmp_path):
    bad = tmp_path / "code.pyth"
    torch.save({"model_state": {"w": torch.zeros(1)}, "extra": _Code()}, bad)
    _convert_fails(tmp_path, bad, "need code to be unpickled")


def test_missing_checkpoint_and_unknown_model(tmp_path):
    _convert_fails(tmp_path, tmp_path / "nope.pyth", "does not exist", exc=FileNotFoundError)
    _convert_fails(tmp_path, tmp_path / "nope.pyth", "unknown model", model="tada2d_r50_8f.kinetics")
    _convert_fails(tmp_path, tmp_path / "nope.pyth", "unknown model", model="not_a_model")


def test_existing_output_dir_is_left_alone(tmp_path, originals, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    rc = cli(["convert", "--model", "tada2d_r50_8f.k400", "--checkpoint", str(originals["tada2d_r50_k400"]),
              "--output", str(out)])
    assert rc == 1
    err = capsys.readouterr().err
    assert "already exists" in err and "Traceback" not in err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_failure_while_writing_leaves_nothing(tmp_path, originals, monkeypatch):
    import safetensors.torch

    def disk_full(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", disk_full)
    _convert_fails(tmp_path, originals["tada2d_r50_k400"], "No space left", exc=OSError)


# ---- checkpoint containers -------------------------------------------------------------

def test_containers_ema_ddp_and_bare(tmp_path):
    sd = {"backbone.conv1.a.weight": torch.ones(2), "head.out.bias": torch.zeros(1)}
    path = tmp_path / "c.pyth"
    ema = {f"module.{k}": v + 1 for k, v in sd.items()}
    torch.save({"model_state": sd, "model_ema_state": ema, "cfg": "{\"MODEL\": {\"NAME\": \"TAda2D\"}}"}, path)
    state, info = read_checkpoint(path)
    assert info["state_key"] == "model_state" and info["cfg"] == {"MODEL": {"NAME": "TAda2D"}}
    assert torch.equal(state["backbone.conv1.a.weight"], torch.ones(2))
    state, info = read_checkpoint(path, ema=True)
    assert set(state) == set(sd) and torch.equal(state["backbone.conv1.a.weight"], torch.full((2,), 2.0))

    torch.save({f"module.{k}": v for k, v in sd.items()}, path)  # bare DDP state dict
    state, info = read_checkpoint(path)
    assert set(state) == set(sd) and info["cfg"] is None
    with pytest.raises(ValueError, match="no 'model_ema_state'"):
        read_checkpoint(path, ema=True)
    torch.save({"epoch": 3, "optimizer_state": {}}, path)
    with pytest.raises(ValueError, match="no 'model_state'"):
        read_checkpoint(path)
