"""Hub side: hub_configs in sync with the registry, release manifest, publishing (dry run) and
offline loading from a Hugging Face cache through every timm entry point."""
import dataclasses
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import timm
import torch
from timm.models import PretrainedCfg
from timm.models._registry import _model_pretrained_cfgs

import tada_zoo  # noqa: F401
from tada_zoo import models
from tada_zoo.deploy.profile import empty_model, params_on_meta
from tada_zoo.weights import hub

ROOT = Path(__file__).resolve().parents[1]
HUB_CONFIGS = ROOT / "hub_configs"


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "conversion" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- hub_configs ----------------------------------------------------------------------

# GFLOPs are recounted for one tag per network kind (counting is the slow part: ~1 s per model);
# the other folders reuse their committed count, all else (params included) is regenerated
_RECOUNT = {"tada2d_r50_8f.k400", "tada2d_r50_16f.ssv2", "tadaconvnext_t_16f.in1k_inflated",
            "tadaconvnextv2_b_32f.in22k_ft_k400", "tadaconvnextv2_t_16f.ssv2", "tadaformer_b16_16f.k400",
            "tadaformer_b16_32f.ssv2"}


def _committed_gflops(name: str):
    try:
        return json.loads((HUB_CONFIGS / name / "config.json").read_text())["profile"]["gflops"]
    except (OSError, KeyError, ValueError):
        return None


def test_hub_configs_match_the_registry(tmp_path):
    """Regenerate every folder and compare; fix with `python conversion/make_hub_configs.py`."""
    names = models.hub_models()
    assert _RECOUNT <= set(names)
    assert {"tada2d_r50_8f.k400", "tada2d_r50_16f.k400", "tada2d_r50_8f.ssv2", "tada2d_r50_16f.ssv2",
            "tadaconvnextv2_b_32f.in22k_ft_k400", "tadaformer_l14_64f.k710_ft_k400",
            "tadaconvnext_t_16f.in1k_inflated"} <= set(names)
    assert set(models.released_models()) < set(names)
    assert sorted(d.name for d in HUB_CONFIGS.iterdir() if d.is_dir()) == names
    for name in names:
        fresh = hub.write_hub_files(name, tmp_path / name, None if name in _RECOUNT else _committed_gflops(name))
        for fname, text in fresh.items():
            assert (HUB_CONFIGS / name / fname).read_text() == text, (
                f"hub_configs/{name}/{fname} is stale: run python conversion/make_hub_configs.py")


@pytest.mark.parametrize("change,fname", [(dict(top1=12.3), "README.md"), (dict(mean=(0.5, 0.5, 0.5)), "config.json"),
                                          (dict(num_frames=4), "README.md")])
def test_drift_is_detected(change, fname, tmp_path, monkeypatch):
    name = "tada2d_r50_8f.k400"
    monkeypatch.setitem(_model_pretrained_cfgs, name, dataclasses.replace(_model_pretrained_cfgs[name], **change))
    fresh = hub.write_hub_files(name, tmp_path)
    assert (HUB_CONFIGS / name / fname).read_text() != fresh[fname]


# what each family's card must say about the weights its training started from (and their licence)
_INIT_LICENCES = {"tada2d": ("torchvision", "BSD-3-Clause"), "tadaconvnextv2": ("facebookresearch/ConvNeXt", "MIT"),
                  "tadaformer": ("OpenAI CLIP", "MIT")}
_CITATION_KIND = {"tada2d": "@inproceedings", "tadaconvnextv2": "@article", "tadaformer": "@article"}


def test_hub_configs_content():
    for name in models.released_models():
        cfg = models.registered_cfg(name)
        family = name.split("_")[0]
        config = json.loads((HUB_CONFIGS / name / "config.json").read_text())
        PretrainedCfg(**config["pretrained_cfg"])  # what timm builds from an hf-hub: config
        if name in _RECOUNT:  # ... and its model_args (one network of each kind: ~0.3 s each)
            model = empty_model(config["architecture"], **config["model_args"])
            assert model.num_classes == cfg.num_classes and model.num_frames == cfg.num_frames
        assert config["architecture"] == name.split(".")[0] and config["num_classes"] == cfg.num_classes
        assert config["model_args"]["num_frames"] == cfg.num_frames
        assert config["video"]["top1"] == cfg.top1 and config["video"]["original_file"] == cfg.original_file
        assert config["video"]["original_url"].startswith("https://drive.google.com/file/d/")
        card = (HUB_CONFIGS / name / "README.md").read_text()
        front = card.split("---")[1]
        assert "pipeline_tag: video-classification" in front and "image-classification" not in card
        assert "license: apache-2.0" in front
        source, licence = _INIT_LICENCES[family]
        init_line = next(line for line in card.splitlines() if line.startswith("- **Initialised from:**"))
        assert source in init_line and f"(licence: {licence})" in init_line, (name, init_line)
        for needle in ("import tada_zoo", f"{cfg.eval_clips} clips x {cfg.eval_crops} crops", f"{cfg.top1:.1f}",
                       cfg.original_file, cfg.original_url, "sha256", _CITATION_KIND[family], "tada-zoo profile"):
            assert needle in card, (name, needle)
    assert not list(HUB_CONFIGS.rglob("*.bin"))


def test_inflated_card_says_what_the_weights_are():
    for name in ("tadaconvnext_t_16f.in1k_inflated", "tadaconvnext_t_32f.in1k_inflated"):
        card = (HUB_CONFIGS / name / "README.md").read_text()
        config = json.loads((HUB_CONFIGS / name / "config.json").read_text())
        assert "license: mit" in card.split("---")[1] and config["num_classes"] == 1000
        for needle in ("never released", "convnext_tiny.fb_in1k", "tada-zoo inflate --model",
                       "Not trained on video", "facebookresearch/ConvNeXt", "licence: MIT", "@inproceedings"):
            assert needle in card, (name, needle)
        assert "original_file" not in config["video"] and "sha256" not in card


def test_meta_device_stats_match_a_real_forward():
    """The cards' GFLOPs are counted on meta tensors: same count as a real forward."""
    from tada_zoo.deploy.profile import count_gmacs

    shape = (1, 3, 2, 64, 64)
    real = count_gmacs(timm.create_model("tada2d_r50_8f"), shape)
    empty = empty_model("tada2d_r50_8f")
    assert next(empty.parameters()).is_meta
    with torch.device("meta"):
        meta = count_gmacs(empty, shape)
    assert meta == pytest.approx(real, rel=1e-9) and real > 0
    stats = json.loads((HUB_CONFIGS / "tada2d_r50_8f.k400" / "config.json").read_text())["profile"]
    assert stats["params"] == 27_485_472  # reference tada2d_r50_k400/meta.json num_params
    assert stats["input"] == [1, 3, 8, 224, 224]


# ---- release manifest -----------------------------------------------------------------

def test_release_manifest_is_written_from_the_registry():
    """conversion/releases.json is generated; fix drift with `python conversion/make_hub_configs.py`."""
    assert (ROOT / "conversion" / "releases.json").read_text() == _load_script("make_hub_configs").manifest_text()
    releases = {e["model"]: e for e in _load_script("publish").load_releases()}
    assert len(releases) == len(_load_script("publish").load_releases()), "duplicate models"
    families = [e["family"] for e in releases.values()]
    # the original MODEL_ZOO.md: 4 TAda2D, 14 TAdaConvNeXtV2 and 10 TAdaFormer checkpoints
    assert {f: families.count(f) for f in set(families)} == {"TAda2D": 4, "TAdaConvNeXtV2": 14, "TAdaFormer": 10}
    for key in ("original_file", "original_url"):  # one download per release
        assert len({e[key] for e in releases.values()}) == len(releases), key
    for name in models.released_models():
        assert name in releases, f"{name} has an original_file but no entry in conversion/releases.json"
        cfg, entry = models.registered_cfg(name), releases[name]
        assert entry["original_file"] == cfg.original_file and entry["original_url"] == cfg.original_url
        assert entry["repo_id"] == models.repo_id(name) == f"tada-zoo/{name}"
        assert entry["frames"] == cfg.num_frames and entry["dataset"] == cfg.dataset
    for entry in releases.values():
        assert set(entry) >= {"model", "dataset", "frames", "original_file", "original_url", "repo_id"}


# ---- not published yet ----------------------------------------------------------------

def test_every_release_points_at_its_safetensors_repo_and_explains_missing_weights(tmp_path, monkeypatch):
    """Every family builds through build_video_model with generate_video_cfgs ids (models
    are built with meta parameters: the download fails before any weight is needed)."""
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    for name in models.hub_models():
        cfg = models.registered_cfg(name)
        assert (cfg.hf_hub_id, cfg.hf_hub_filename) == (f"tada-zoo/{name}", "model.safetensors"), name
        recipe = f"--model {name} " if cfg.original_file else f"tada-zoo inflate --model {name} "
        assert re.search(recipe, models.how_to_get(name)), name
        if name in _RECOUNT:  # one network of each kind goes through timm (~0.4 s each)
            with params_on_meta(), pytest.raises(models.WeightsNotAvailableError, match=recipe):
                timm.create_model(name, pretrained=True, cache_dir=tmp_path)


def test_unpublished_weights_explain_local_conversion(tmp_path, monkeypatch):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(models.WeightsNotAvailableError) as e:
        timm.create_model("tada2d_r50_16f.ssv2", pretrained=True, cache_dir=tmp_path)
    msg = str(e.value)
    assert "not published" in msg and "tada-zoo convert --model tada2d_r50_16f.ssv2" in msg
    assert "tada2d_16f_ssv2.pyth" in msg and "pretrained_cfg_overlay" in msg


def test_published_but_unreachable_weights_say_so(tmp_path, monkeypatch):
    import huggingface_hub.constants as hf_constants

    name = "tada2d_r50_8f.ssv2"
    monkeypatch.setitem(_model_pretrained_cfgs, name, dataclasses.replace(_model_pretrained_cfgs[name], published=True))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(models.WeightsNotAvailableError, match=r"(?s)could not fetch tada-zoo/tada2d_r50_8f.ssv2.*convert"):
        timm.create_model(name, pretrained=True, cache_dir=tmp_path)


# ---- publishing (dry run) + offline loading from an HF cache -----------------------------

_OFFLINE_CHECKS = textwrap.dedent("""
    import json, sys
    import timm, torch
    from safetensors.torch import load_file
    import tada_zoo
    sys.path.insert(0, sys.argv[1])
    from conftest import Reference

    snapshot = sys.argv[2]
    saved = load_file(snapshot + "/model.safetensors")
    ref = Reference("tada2d_r50_k400")
    x = ref.input()
    out = {}

    def same(model, skip=()):
        sd = model.state_dict()
        return all(torch.equal(sd[k], v) for k, v in saved.items() if not k.startswith(skip))

    def rel_err(model):
        with torch.no_grad():
            y = model.eval()(x)
        return ((y - ref.expected["logits"]).abs().max() / ref.expected["logits"].abs().max()).item()

    m = timm.create_model("tada2d_r50_8f.k400", pretrained=True)
    out["name"] = [same(m), rel_err(m)]
    m = timm.create_model("hf-hub:tada-zoo/tada2d_r50_8f.k400", pretrained=True)
    out["hf_hub"] = [same(m), m.num_frames, list(m.pretrained_cfg["mean"]), m.pretrained_cfg.get("sampling"),
                     m.pretrained_cfg.get("top1")]  # the video facts, from config.json's "video" entry
    for src in ("tada2d_r50_8f.k400", "hf-hub:tada-zoo/tada2d_r50_8f.k400"):
        m = timm.create_model(src, pretrained=True, num_classes=10)
        out["finetune " + src] = [same(m, skip=("fc.",)), m.num_classes, tuple(m.fc.weight.shape)]
    for key, src in (("unpublished", "tada2d_r50_16f.k400"), ("config_only", "hf-hub:tada-zoo/tada2d_r50_16f.k400")):
        try:
            timm.create_model(src, pretrained=True)
            out[key] = "loaded?!"
        except tada_zoo.models.WeightsNotAvailableError as e:
            out[key] = str(e)
    print(json.dumps(out))
""")


def test_publish_dry_run_then_load_offline_from_hf_cache(tmp_path, reference):
    publish = _load_script("publish")
    originals = tmp_path / "downloads"
    originals.mkdir()
    torch.save(reference("tada2d_r50_k400").checkpoint(), originals / "tada2d_8x8_k400.pyth")
    repos = tmp_path / "repos"
    result = publish.publish(originals, dry_run=repos, only=["tada2d_r50_8f.k400", "tada2d_r50_16f.k400"])
    assert result["done"] == ["tada-zoo/tada2d_r50_8f.k400"]
    assert "not found" in result["skipped"]["tada2d_r50_16f.k400"]
    repo = repos / "tada-zoo" / "tada2d_r50_8f.k400"
    assert sorted(p.name for p in repo.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    again = publish.publish(originals, dry_run=repos, only=["tada2d_r50_8f.k400"])  # resumes
    assert again["done"] == [] and "already written" in again["skipped"]["tada2d_r50_8f.k400"]
    with pytest.raises(SystemExit, match="HF_TOKEN"):
        env = dict(os.environ)
        os.environ.pop("HF_TOKEN", None)
        try:
            publish.publish(originals)
        finally:
            os.environ.clear()
            os.environ.update(env)

    # the real cache layout: models--<org>--<repo>/{refs/main, snapshots/<rev>/...}
    rev = "0123456789abcdef0123456789abcdef01234567"
    cache = tmp_path / "hf_cache"
    snapshot = cache / "models--tada-zoo--tada2d_r50_8f.k400" / "snapshots" / rev
    shutil.copytree(repo, snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text(rev)

    # a repo whose config.json is cached but not its weights
    other = cache / "models--tada-zoo--tada2d_r50_16f.k400"
    (other / "snapshots" / rev).mkdir(parents=True)
    shutil.copy(HUB_CONFIGS / "tada2d_r50_16f.k400" / "config.json", other / "snapshots" / rev)
    (other / "refs").mkdir()
    (other / "refs" / "main").write_text(rev)

    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(cache), HF_HOME=str(tmp_path / "hf_home"),
               PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-c", _OFFLINE_CHECKS, str(ROOT / "tests"), str(snapshot)],
                       capture_output=True, text=True, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    for key in ("name", "hf_hub"):  # pretrained_cfg_overlay=dict(file=...): test_convert.py
        assert out[key][0] is True, key  # exactly the published tensors
    assert out["name"][1] <= 1e-4  # and they reproduce the original code's logits
    assert out["hf_hub"][1:] == [8, [0.45, 0.45, 0.45], "interval", 76.7]
    for key in ("finetune tada2d_r50_8f.k400", "finetune hf-hub:tada-zoo/tada2d_r50_8f.k400"):
        assert out[key] == [True, 10, [10, 2048]], key
    assert "not published" in out["unpublished"] and "tada-zoo convert" in out["unpublished"]
    assert "could not fetch tada-zoo/tada2d_r50_16f.k400" in out["config_only"]
    assert "tada-zoo convert --model tada2d_r50_16f.k400 --checkpoint tada2d_16x5_k400.pyth" in out["config_only"]


def test_push_folder_uploads_the_written_folder(tmp_path, monkeypatch):
    import huggingface_hub

    calls = []

    class FakeApi:
        def __init__(self, token=None):
            calls.append(("token", token))

        def create_repo(self, repo_id, private=False, exist_ok=False):
            calls.append(("create", repo_id, exist_ok))
            return type("Url", (), {"repo_id": repo_id})()

        def upload_folder(self, **kwargs):
            calls.append(("upload", kwargs["repo_id"], kwargs["folder_path"], tuple(kwargs["allow_patterns"])))

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setenv("HF_TOKEN", "hf_from_env")
    folder = tmp_path / "repo"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="model.safetensors"):
        hub.push_folder(folder, "tada-zoo/x")
    (folder / "model.safetensors").write_bytes(b"")
    (folder / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(ValueError, match=r"no pickled \.bin"):
        hub.push_folder(folder, "tada-zoo/x")
    (folder / "pytorch_model.bin").unlink()
    assert hub.push_folder(folder, "tada-zoo/x") == "tada-zoo/x"
    assert calls == [("token", "hf_from_env"), ("create", "tada-zoo/x", True),
                     ("upload", "tada-zoo/x", str(folder), ("model.safetensors", "config.json", "README.md"))]


# ---- timm's own save_for_hf / push_to_hf_hub round trip ----------------------------------------

def _cache_repo(cache: Path, repo_id: str) -> Path:
    """An empty snapshot folder of ``repo_id`` in huggingface_hub's cache layout (refs/main -> rev)."""
    rev = "89abcdef0123456789abcdef0123456789abcdef"
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(rev)
    return repo / "snapshots" / rev


# name -> its family in tests/test_models.py FAMILIES (tiny kwargs, input clip)
_TINY = {"tada2d_r50_8f.ssv2": "VideoResNet", "tadaformer_b16_16f.ssv2": "TAdaFormer", "slowfast_r50_8x8": "SlowFast"}


@pytest.mark.parametrize("name", sorted(_TINY))
def test_save_for_hf_round_trip_offline(name, tmp_path, monkeypatch):
    """A fine-tuned model saved with timm's save_for_hf (what push_to_hf_hub uploads) loads back
    through hf-hub: (offline, from the HF cache) and local-dir:, with its network (the .ssv2
    TAdaFormer is another network), weights, video facts and class names."""
    import huggingface_hub.constants as hf_constants

    from test_models import FAMILIES

    kwargs, shape = FAMILIES[_TINY[name]]
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=5, **kwargs).eval()
    classes = ["archery", "bowling", "cooking", "dancing", "eating"]
    snapshot = _cache_repo(tmp_path / "hf_cache", "someone/finetuned")
    timm.models.save_for_hf(model, snapshot, model_config=dict(label_names=classes), safe_serialization=True)
    assert not (snapshot / "pytorch_model.bin").exists()
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    x = torch.randn(shape)
    with torch.no_grad():
        expected = model(x)
    for source in ("hf-hub:someone/finetuned", f"local-dir:{snapshot}"):
        loaded = timm.create_model(source, pretrained=True).eval()
        assert type(loaded) is type(model) and loaded.num_classes == 5
        assert loaded.state_dict().keys() == model.state_dict().keys()
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), expected)
        cfg = loaded.pretrained_cfg
        assert list(cfg["label_names"]) == classes
        for key in ("num_frames", "sampling", "target_fps", "dataset"):
            assert cfg.get(key) == model.pretrained_cfg.get(key), key
        assert cfg["num_frames"] == model.num_frames and cfg.get("tag") == model.pretrained_cfg.get("tag")
    # and it fine-tunes again: a new head, the rest of the saved weights
    again = timm.create_model("hf-hub:someone/finetuned", pretrained=True, num_classes=3)
    head = model.pretrained_cfg["classifier"] + "."
    assert again.num_classes == 3 and all(torch.equal(v, model.state_dict()[k])
                                          for k, v in again.state_dict().items() if not k.startswith(head))


def test_config_with_unknown_cfg_fields_is_refused_by_name(tmp_path):
    from test_models import FAMILIES

    model = timm.create_model("tada2d_r50_8f", **FAMILIES["VideoResNet"].kwargs)
    timm.models.save_for_hf(model, tmp_path, safe_serialization=True)
    config = json.loads((tmp_path / "config.json").read_text())
    config["pretrained_cfg"]["frames_per_second_v9"] = 3
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"fields neither timm .* know: \['frames_per_second_v9'\]"):
        timm.create_model(f"local-dir:{tmp_path}", pretrained=True)
