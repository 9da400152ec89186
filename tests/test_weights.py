"""Pretrained weights without the Hub: the weights folder ($TADA_ZOO_HOME, originals converted on
first use), --pretrained PATH, what a user without weights is told, the opt-in download (against a
local HTTP server) and `tada-zoo inflate`."""
import dataclasses
import functools
import http.server
import json
import threading
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file, save_file
from timm.models._registry import _model_pretrained_cfgs

import tada_zoo  # noqa: F401
from tada_zoo.cli import build_parser
from tada_zoo.cli import main as cli
from tada_zoo.cli._args import resolve_pretrained
from tada_zoo.models import _weights
from tada_zoo.models import WeightsNotAvailableError, create_video_model
from tada_zoo.models.tada2d import checkpoint_filter_fn

NAME, ORIGINAL = "tada2d_r50_8f.k400", "tada2d_8x8_k400.pyth"  # a release and its original file name


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    """An empty weights folder, no network for the Hub, and a Hub download that fails the test."""
    import huggingface_hub.constants as hf_constants

    d = tmp_path / "tada_home"
    monkeypatch.setenv("TADA_ZOO_HOME", str(d))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(timm.models._builder, "load_state_dict_from_hf",
                        lambda *a, **k: pytest.fail("went to the Hub"), raising=False)
    return d


@pytest.fixture(scope="module")
def original(tmp_path_factory, reference):
    """The release's original-format .pyth (reference weights of the original TAda2D-R50)."""
    path = tmp_path_factory.mktemp("originals") / ORIGINAL
    torch.save(reference("tada2d_r50_k400").checkpoint(), path)
    return path


def _expected(original_path, model):
    """What the weights must be: the family's key map applied to the original state dict."""
    sd = torch.load(original_path, map_location="cpu", weights_only=True)["model_state"]
    return checkpoint_filter_fn(sd, model)


def _same(model, expected, skip=()):
    own = model.state_dict()
    return all(torch.equal(own[k], v) for k, v in expected.items() if not k.startswith(skip))


# ---- the weights folder -------------------------------------------------------------------

def test_original_in_weights_folder_is_converted_on_first_use(home, original, monkeypatch, capsys):
    home.mkdir()
    (home / ORIGINAL).symlink_to(original)
    model = timm.create_model(NAME, pretrained=True)
    converted = home / NAME / "model.safetensors"
    assert converted.is_file() and _same(model, _expected(original, model))
    assert model.pretrained_cfg["tag"] == "k400"
    assert "converting" in capsys.readouterr().err
    assert not [p for p in (home / NAME).iterdir() if p.name != "model.safetensors"], "temp file left"
    assert load_file(str(converted)).keys() == model.state_dict().keys()

    # second use: the cached safetensors, no conversion; a new head for fine-tuning
    monkeypatch.setattr(_weights, "convert_original", lambda *a, **k: pytest.fail("converted again"))
    tuned = timm.create_model(NAME, pretrained=True, num_classes=5)
    assert tuned.fc.weight.shape == (5, 2048) and _same(tuned, _expected(original, model), skip=("fc.",))


def test_original_of_another_release_in_the_folder_is_refused(home, original):
    home.mkdir()
    (home / "tada2d_16x5_k400.pyth").symlink_to(original)  # the 8-frame checkpoint under the 16-frame name
    with pytest.raises(ValueError, match=r"num_frames=16 .* num_frames=8; releases that fit: tada2d_r50_8f.k400"):
        timm.create_model("tada2d_r50_16f.k400", pretrained=True)
    assert not (home / "tada2d_r50_16f.k400").exists()


# ---- what users without weights are told ----------------------------------------------------

def test_missing_weights_name_file_url_folder_and_commands(home):
    cfg = _model_pretrained_cfgs[NAME]
    with pytest.raises(WeightsNotAvailableError) as e:  # fails before any Hub request (fixture)
        timm.create_model(NAME, pretrained=True)
    msg = str(e.value)
    for needle in (ORIGINAL, cfg.original_url, str(home / ORIGINAL), f"tada-zoo download {NAME}",
                   f"tada-zoo convert --model {NAME} --checkpoint {ORIGINAL} --output {home / NAME}"):
        assert needle in msg, needle

    # the command line: in its own flags
    args = build_parser().parse_args(["train", "--model", "tada2d_r50_8f", "--pretrained", "k400", "--data-root", ".",
                                      "--train-list", "x", "--num-classes", "3", "--output", "o"])
    with pytest.raises(WeightsNotAvailableError) as e:
        resolve_pretrained(args, args.model)
    msg = str(e.value)
    assert msg.startswith("--pretrained k400: ") and "add --download to this command" in msg
    assert f"--pretrained PATH/{ORIGINAL}" in msg and str(home / ORIGINAL) in msg


def test_tags_without_weights_say_which_tags_have_them():
    with pytest.raises(WeightsNotAvailableError, match=r"no weights exist for tadaformer_b16_16f.k710.*"
                                                       r"tadaformer_b16_16f.k710_ft_k400"):
        timm.create_model("tadaformer_b16_16f.k710", pretrained=True)
    with pytest.raises(WeightsNotAvailableError, match=r"tada-zoo inflate --model tadaconvnext_t_16f.in1k_inflated "
                                                       r"\(fetches timm's convnext_tiny.fb_in1k"):
        timm.create_model("tadaconvnext_t_16f.in1k_inflated", pretrained=True)


# ---- --pretrained PATH ----------------------------------------------------------------------

def test_pretrained_original_file_and_converted_folder(tmp_path, original):
    # the release's file name gives the tag (its cfg: data protocol, classes)
    model = create_video_model("tada2d_r50_8f", pretrained=str(original))
    assert model.pretrained_cfg["tag"] == "k400" and _same(model, _expected(original, model))

    folder = tmp_path / "converted"
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"pretrained_cfg": {"tag": "k400"}}))
    again = create_video_model("tada2d_r50_8f", 10, pretrained=str(folder))  # a new head: fine-tuning
    assert again.num_classes == 10 and _same(again, _expected(original, model), skip=("fc.",))

    renamed = tmp_path / "weights.pyth"
    renamed.symlink_to(original)
    with pytest.raises(ValueError, match="num_frames=16 .* num_frames=8"):  # the stored config disagrees
        create_video_model("tada2d_r50_16f.k400", pretrained=str(renamed))
    with pytest.raises(FileNotFoundError, match=r"--pretrained nope.pyth: neither a tag of tada2d_r50_8f \(k400, ssv2"):
        create_video_model("tada2d_r50_8f", pretrained="nope.pyth")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="the folder has no model.safetensors"):
        create_video_model("tada2d_r50_8f", pretrained=str(empty))


# ---- download (opt-in), against a local HTTP server ----------------------------------------

@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _point_release_at(monkeypatch, url):
    cfg = dataclasses.replace(_model_pretrained_cfgs[NAME], original_url=url)
    monkeypatch.setitem(_model_pretrained_cfgs, NAME, cfg)


def test_download_fetches_checks_and_converts(home, original, server, monkeypatch, tmp_path, capsys):
    pytest.importorskip("gdown")
    monkeypatch.setenv("HOME", str(tmp_path))  # gdown's cookie file
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    root, base = server
    (root / "page.html").write_text("<html>Google Drive - quota exceeded</html>")
    _point_release_at(monkeypatch, f"{base}/page.html")
    assert cli(["download", NAME, "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "not a PyTorch checkpoint" in err and str(home / ORIGINAL) in err and "Traceback" not in err
    assert not home.exists() or not any(home.iterdir()), "a failed download left files"

    (root / ORIGINAL).symlink_to(original)
    _point_release_at(monkeypatch, f"{base}/{ORIGINAL}")
    assert cli(["download", NAME, "--quiet"]) == 0
    assert (home / ORIGINAL).read_bytes() == original.read_bytes()
    assert (home / NAME / "model.safetensors").is_file()
    model = timm.create_model(NAME, pretrained=True)
    assert _same(model, _expected(original, model))


def test_download_flag_of_a_command(home, original, server, monkeypatch, tmp_path):
    pytest.importorskip("gdown")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    root, base = server
    (root / ORIGINAL).symlink_to(original)
    _point_release_at(monkeypatch, f"{base}/{ORIGINAL}")
    argv = ["train", "--model", "tada2d_r50_8f", "--data-root", ".", "--train-list", "x", "--num-classes", "3",
            "--output", "o"]
    args = build_parser().parse_args(argv + ["--download"])
    with pytest.raises(ValueError, match="--download needs --pretrained"):
        resolve_pretrained(args, args.model)
    args = build_parser().parse_args(argv + ["--pretrained", "k400", "--download"])
    assert resolve_pretrained(args, args.model) == "k400"
    assert (home / NAME / "model.safetensors").is_file() and (home / ORIGINAL).is_file()


# ---- tada-zoo inflate ---------------------------------------------------------------------------

TINY = dict(depths=(1, 1, 2, 1), dims=(16, 32, 64, 128))


def test_inflate_command_writes_the_tag_into_the_weights_folder(home, tmp_path):
    from tada_zoo.weights.inflate import inflate_convnext

    torch.manual_seed(0)
    net2d = timm.create_model("convnext_tiny", num_classes=1000, **TINY)
    src = tmp_path / "convnext_2d.safetensors"
    save_file(net2d.state_dict(), str(src))
    name = "tadaconvnext_t_16f.in1k_inflated"
    argv = ["inflate", "--model", name, "--source", str(src), "--model-kwargs", json.dumps(TINY)]
    assert cli(argv) == 0
    folder = home / name
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert "tada-zoo inflate" in json.loads((folder / "config.json").read_text())["provenance"]["converter"]
    assert cli(argv) == 1  # never overwrites

    # pretrained=True now finds it; what comes from the 2D weights is the rule's (applied here
    # directly; the route functions keep their own random init)
    model = timm.create_model(name, pretrained=True, **TINY)
    assert _same(model, load_file(str(folder / "model.safetensors")))
    expected = inflate_convnext(timm.create_model("tadaconvnext_t_16f", num_classes=1000, **TINY), net2d.state_dict())
    from_2d = {k: v for k, v in expected.state_dict().items() if ".conv_dw_rf." not in k and ".norm_pool." not in k}
    assert len(from_2d) > 20 and _same(model, from_2d)

    assert cli(["inflate", "--model", "tadaconvnext_t_16f", "--source", str(tmp_path / "missing.pth"),
                "--output", str(tmp_path / "o")]) == 1
    assert cli(["inflate", "--model", "tadaconvnext_t_16f", "--source", str(src)]) == 1  # no --output for an arch


@pytest.mark.parametrize("content", ["garbage", "other release"])
def test_a_wrong_file_in_the_weights_folder_is_named_in_the_error(home, reference, content):
    home.mkdir()
    if content == "garbage":
        (home / ORIGINAL).write_bytes(b"<html>quota exceeded</html>")
    else:  # the SSV2 release saved under the K400 name
        torch.save(reference("tada2d_r50_ssv2").checkpoint(), home / ORIGINAL)
    with pytest.raises(ValueError) as e:
        timm.create_model(NAME, pretrained=True)
    text = str(e.value)
    assert text.startswith(f"{home / ORIGINAL} in the weights folder (TADA_ZOO_HOME) is not the {NAME} checkpoint")
    assert "\n" not in text and "remove it" in text
