"""Pictures: Grad-CAM and alpha_t (tada_zoo.inference.visualize), the visualize command, confusion matrices
and training curves (tada_zoo.plots). Values behind every picture are checked against direct
recomputations through other routes (module hooks, route-function outputs, numpy counts)."""
import csv
import json
import re

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

import tada_zoo  # noqa: F401
from tada_zoo import plots
from tada_zoo.inference.visualize import (explain_clip, feature_level, load_clip, record_alpha, select_tada_layers,
                                tada_layer_names, to_uint8_frames)

from _engine_utils import ClipDataset, one_thread, tiny_model  # noqa: F401

pytest.importorskip("matplotlib")
from PIL import Image  # noqa: E402  (matplotlib brings Pillow)

T, SIZE = 4, 64

# tiny models (tests/test_models.py's FAMILIES rows) and how each level's module output becomes (C, T', H', W')
TINY = {
    "tada2d_r50_8f": (dict(layers=(1, 1, 1, 1), widths=(4, 8, 8, 16), stem_width=8),
                      "layer4", lambda o: o[0].permute(1, 0, 2, 3)),  # frame-major (B, T, C, H, W)
    "tadaconvnextv2_t_16f": (dict(depths=(1, 1, 1, 1), dims=(16, 32, 64, 128), head_dim=8),
                             "stages.3", lambda o: o[0].permute(3, 0, 1, 2)),  # channels-last (B, T, H, W, C)
    "tadaformer_b16": (dict(img_size=SIZE, patch_size=16, embed_dim=64, depth=3, num_heads=2, rf_head_dim=16),
                       "blocks.1", lambda o: _tokens_to_map(o)),  # tokens (B * T', 1 + H' W', D)
    # R(2+1)D TAda: its 2d TAdaConvs run functionally (alpha from the route function), the 1d ones as modules
    "r2plus1d_r50_8f_tada2d1d": (dict(layers=(1, 1, 1, 1), widths=(4, 8, 8, 8), stem_width=8), None, None),
}


def _tokens_to_map(o):
    side = int(round((o.shape[1] - 1) ** 0.5))
    return o[:, 1:].reshape(o.shape[0], side, side, -1).permute(3, 0, 1, 2)


def _model(name, num_classes=5, seed=0):
    """A tiny model whose route functions are randomised (at init alpha_t == 1 everywhere)."""
    torch.manual_seed(seed)
    model = timm.create_model(name, num_classes=num_classes, **TINY[name][0])
    with torch.no_grad():
        for n, p in model.named_parameters():
            if re.search(r"_rf\.b(_bias)?\.weight$", n):
                p.normal_(0, 0.3)
    return model.eval()


def _clip(seed=0):
    return torch.randn(3, T, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def _direct_cam(model, clip, module_name, to_map, k):
    """Grad-CAM through a forward hook on the level's module (not the family hooks visualize uses)."""
    got = {}
    handle = model.get_submodule(module_name).register_forward_hook(lambda m, i, o: got.setdefault("o", o))
    try:
        logits = model(clip[None])[0]
    finally:
        handle.remove()
    (g,) = torch.autograd.grad(logits[k], got["o"])
    a, g = to_map(got["o"].detach()), to_map(g)
    cam = F.relu((g.mean((1, 2, 3))[:, None, None, None] * a).sum(0))
    cam = F.interpolate(cam[None, None], size=clip.shape[1:], mode="trilinear", align_corners=False)[0, 0]
    return (cam / cam.max()).numpy(), logits.detach()


@pytest.mark.parametrize("name", [n for n in TINY if TINY[n][1]])
def test_cam_equals_direct_recomputation(name):
    model, clip = _model(name), _clip()
    module_name, to_map = TINY[name][1:]
    k = 2
    r = explain_clip(model, clip, class_index=k, layer=module_name, alpha_layers="none")
    expected, logits = _direct_cam(model, clip, module_name, to_map, k)
    assert r["layer"] == module_name and r["class_index"] == k and r["alpha"] == {}
    assert r["cam"].shape == (T, SIZE, SIZE)
    assert r["cam"].min() >= 0 and r["cam"].max() == pytest.approx(1.0)
    np.testing.assert_allclose(r["cam"], expected, atol=1e-5)
    np.testing.assert_allclose(r["logits"], logits.numpy(), rtol=1e-5, atol=1e-6)
    # default class: the top-1 prediction
    assert explain_clip(model, clip, layer=module_name, alpha_layers="none")["class_index"] == int(logits.argmax())


def test_cam_is_not_a_constant():
    """The CAM follows the map: a clip whose right half is blank gets another CAM than its mirror."""
    model = _model("tada2d_r50_8f")
    clip = _clip()
    clip[..., SIZE // 2:] = 0
    a = explain_clip(model, clip, class_index=0, layer="layer3", alpha_layers="none")["cam"]
    b = explain_clip(model, clip.flip(-1), class_index=0, layer="layer3", alpha_layers="none")["cam"]
    assert a.std() > 0.01 and np.abs(a - b).max() > 0.1


def _route_outputs(model):
    """alpha_t ``(C, T)`` per TAdaConv, recorded at its route function ``<name>_rf`` (whatever method the
    model calls: ``forward``, with or without ``frames_last``, ``forward_frames`` or ``calibration``)."""
    seen, undo = {}, []
    for name in tada_layer_names(model):
        rf = model.get_submodule(name + "_rf")
        for attr, layout in (("forward", "bct"), ("forward_frames", "btc"), ("calibration", "bct")):
            def rec(*a, _fn=getattr(rf, attr), _name=name, _layout=layout, **kw):
                out = _fn(*a, **kw)
                first = out[0] if isinstance(out, (list, tuple)) else out
                if kw.get("frames_last"):  # (B, T, 1, 1, C)
                    seen.setdefault(_name, first[:, :, 0, 0][0].T)
                    return out
                first = first.reshape(first.shape[:3])[0]
                seen.setdefault(_name, first.T if _layout == "btc" else first)
                return out
            setattr(rf, attr, rec)
            undo.append((rf, attr))
    return seen, undo


@pytest.mark.parametrize("name", list(TINY))
def test_alpha_equals_the_route_functions_output(name):
    model, clip = _model(name), _clip()
    with torch.no_grad():
        plain = model(clip[None])
    r = explain_clip(model, clip, class_index=0)  # every TAdaConv layer by default
    assert list(r["alpha"]) == tada_layer_names(model) and r["alpha"]
    for conv in map(model.get_submodule, r["alpha"]):  # the recording left no wrapper behind
        assert "forward" not in conv.__dict__ and "forward_frames" not in conv.__dict__
    seen, undo = _route_outputs(model)
    with torch.no_grad():
        assert torch.equal(model(clip[None]), plain)
    for rf, attr in undo:
        del rf.__dict__[attr]
    for n, a in r["alpha"].items():
        assert a.shape == tuple(seen[n].shape), n
        np.testing.assert_allclose(a, seen[n].numpy(), rtol=1e-5, atol=1e-6, err_msg=n)
    # the route functions are random: alpha_t varies over time (a tiny hidden layer may be all ReLU-zero)
    assert max(a.std(1).max() for a in r["alpha"].values()) > 1e-3


def test_alpha_layer_patterns_and_families_without_tadaconv():
    model = _model("tadaconvnextv2_t_16f")
    assert select_tada_layers(model, "stages.3.*") == ["stages.3.blocks.0.conv_dw"]
    assert select_tada_layers(model, "stages.0.*, stages.2.*") == ["stages.0.blocks.0.conv_dw", "stages.2.blocks.0.conv_dw"]
    with pytest.raises(ValueError, match="no TAdaConv layer matches 'layer9'.*stages.0.blocks.0.conv_dw"):
        select_tada_layers(model, "layer9")
    tsn = tiny_model("tsn_r50_8f", num_classes=3)
    with pytest.raises(ValueError, match="has no TAdaConv layers"):
        select_tada_layers(tsn, "*")
    assert explain_clip(tsn, torch.randn(3, T, 32, 32))["alpha"] == {}  # default: none to plot, no error
    with pytest.raises(ValueError, match="is not a TAdaConv layer"):
        with record_alpha(tsn, ["layer1"]):
            pass


def test_layer_choice():
    model = _model("tadaconvnextv2_t_16f")
    assert feature_level(model) == feature_level(model, "stages.3") == feature_level(model, -1) == 3
    assert feature_level(model, "1") == 1
    with pytest.raises(ValueError, match="not a feature level.*stages.0, stages.1"):
        feature_level(model, "stages.9")
    with pytest.raises(ValueError, match="out of range"):
        feature_level(model, 4)
    former = _model("tadaformer_b16")
    assert former.feature_info[feature_level(former)]["module"] == "blocks.1"  # class-token head
    with pytest.raises(ValueError, match="does not depend on the map of level blocks.2"):
        explain_clip(former, _clip(), layer="blocks.2", alpha_layers="none")


def _png(path):
    img = np.asarray(Image.open(path).convert("RGB"))
    assert img.std() > 0 and (img < 250).any(axis=-1).mean() > 0.01, f"{path} is blank"
    return img


@pytest.fixture(scope="module")
def shape_video(tmp_path_factory):
    from tada_zoo.data.synthetic import moving_shape_clip, write_video

    path = tmp_path_factory.mktemp("viz") / "clip.mp4"
    write_video(path, moving_shape_clip(0, 48, 80, np.random.default_rng(0)))
    return path


def test_visualize_command_writes_pictures_and_their_values(shape_video, tmp_path, capsys):
    from tada_zoo.cli import main
    from tada_zoo.data import protocol_from_cfg

    name = "tadaconvnextv2_t_16f"
    model = _model(name, num_classes=4)
    save_file(model.state_dict(), tmp_path / "w.safetensors")
    out = tmp_path / "out"
    rc = main(["visualize", str(shape_video), "--model", name, "--checkpoint", str(tmp_path / "w.safetensors"),
               "--num-classes", "4", "--num-frames", str(T), "--test-size", str(SIZE), "--device", "cpu",
               "--model-kwargs", json.dumps(TINY[name][0]), "--alpha-layers", "stages.1.*,stages.3.*",
               "--output", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert {p.name for p in out.iterdir()} == {"gradcam.png", "gradcam.gif", "alpha.png", "values.npz", "summary.json"}
    v = np.load(out / "values.npz")
    summary = json.loads((out / "summary.json").read_text())

    # the values: the model's first test view, recomputed here
    protocol = protocol_from_cfg(model.pretrained_cfg, num_frames=T, test_crop=SIZE)
    clip, idx = load_clip(shape_video, protocol)
    np.testing.assert_array_equal(v["frame_indices"], idx)
    np.testing.assert_array_equal(v["frames"], to_uint8_frames(clip, protocol.mean, protocol.std))
    assert v["frames"].shape == (T, SIZE, SIZE, 3)
    r = explain_clip(model, clip, alpha_layers="stages.1.*,stages.3.*")
    assert summary["class_index"] == r["class_index"] == int(np.argmax(v["probs"]))
    np.testing.assert_allclose(v["cam"], r["cam"], atol=1e-6)
    assert v["cam"].shape == (T, SIZE, SIZE) and v["cam"].min() >= 0 and v["cam"].max() == pytest.approx(1)
    np.testing.assert_array_equal(v["overlays"], plots.overlay_cam(v["frames"], v["cam"]))
    assert sorted(k for k in v.files if k.startswith("alpha/")) == ["alpha/stages.1.blocks.0.conv_dw",
                                                                   "alpha/stages.3.blocks.0.conv_dw"]
    for n, a in r["alpha"].items():
        np.testing.assert_allclose(v[f"alpha/{n}"], a, rtol=1e-6)
        assert summary["alpha_layers"][n]["mean_over_channels"] == pytest.approx(a.mean(0).tolist())

    # the pictures: sizes, not blank
    strip = _png(out / "gradcam.png")
    assert strip.shape[1] > strip.shape[0] > 100  # a strip: frames side by side, two rows
    alpha = _png(out / "alpha.png")
    assert alpha.shape[0] > 200
    gif = Image.open(out / "gradcam.gif")
    k = -(-384 // (2 * SIZE))  # small clips are enlarged to >= 384 px, pixels repeated
    assert gif.n_frames == T and gif.size == (2 * SIZE * k, (SIZE + max(2, SIZE // 32)) * k) and gif.size[0] >= 384
    gif.seek(T - 1)
    last = np.asarray(gif.convert("RGB"))[::k, ::k]
    assert last[:SIZE].std() > 0
    # the overlay half shows the CAM colours: it differs from the frame half
    assert np.abs(last[:SIZE, SIZE:].astype(int) - last[:SIZE, :SIZE].astype(int)).mean() > 10


def test_visualize_command_errors(shape_video, tmp_path, capsys):
    from tada_zoo.cli import main

    kw = json.dumps(dict(layers=(1, 1, 1, 1), widths=(4, 8, 8, 16), stem_width=8))
    base = ["visualize", str(shape_video), "--model", "tsn_r50_8f", "--num-frames", str(T), "--test-size", "32",
            "--device", "cpu", "--model-kwargs", kw, "--output", str(tmp_path / "o")]
    assert main(base + ["--alpha-layers", "*"]) == 1
    assert "has no TAdaConv layers" in capsys.readouterr().err
    assert main(base + ["--layer", "stages.3"]) == 1
    assert "'stages.3' is not a feature level" in capsys.readouterr().err
    assert main(["visualize", str(tmp_path / "missing.mp4"), "--model", "tsn_r50_8f", "--output", "x"]) == 1
    assert "missing.mp4: no such file" in capsys.readouterr().err
    assert main(base) == 0  # a baseline still gets its Grad-CAM, without alpha.png
    assert not (tmp_path / "o" / "alpha.png").exists() and (tmp_path / "o" / "gradcam.png").exists()


def _colour_pixels(img, rgb, tol=30):
    return int((np.abs(img.astype(int) - np.array(rgb)).sum(-1) < tol).sum())


def _marker_is_drawn(img, fig, ax, xy, rgb):
    """The PNG ``img`` of ``fig`` has colour ``rgb`` where ``ax`` puts the data point ``xy``."""
    x, y = ax.transData.transform(xy)
    row, col = int(round(img.shape[0] - y)), int(round(x))
    patch = img[row - 2:row + 3, col - 2:col + 3]
    return _colour_pixels(patch, rgb) >= 9


def test_curves_show_a_single_epoch(tmp_path):
    from tada_zoo.engine import TrainConfig, fit

    cfg = TrainConfig(model="tada2d_r50_8f", num_classes=[2], epochs=1, batch_size=4, lr=0.05, workers=0,
                      output=str(tmp_path), progress=False)
    fit(tiny_model(), ClipDataset(8), ClipDataset(4, seed=1), cfg)
    img = _png(tmp_path / "curves.png")
    (row,) = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    fig = plots.curves_figure([row])  # the figure behind curves.png: where its points are
    assert img.shape[:2] == (fig.bbox.height, fig.bbox.width)
    ax1, ax2 = fig.axes[:2]
    assert _marker_is_drawn(img, fig, ax1, (1, row["train_loss"]), (31, 119, 180))  # tab:blue
    assert _marker_is_drawn(img, fig, ax2, (1, row["val_top1"]), (255, 127, 14))  # tab:orange
    # per-step losses, where logged, are drawn as well (grey)
    rows = [dict(type="step", epoch=1, step=s, steps_per_epoch=4, loss=2.0 - 0.3 * s) for s in range(4)]
    plots.plot_curves(rows + [dict(type="epoch", epoch=1, train_loss=1.5)], tmp_path / "steps.png")
    assert _colour_pixels(_png(tmp_path / "steps.png"), (153, 153, 153), tol=10) > 20


def test_confusion_matrix_and_files(tmp_path):
    from tada_zoo.engine.evaluate import write_confusion

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, 40)
    preds = np.where(rng.random(40) < 0.6, labels, rng.integers(0, 5, 40))
    counts = plots.confusion_matrix(preds, labels, 5)
    for i in range(5):
        for j in range(5):
            assert counts[i, j] == int(((labels == i) & (preds == j)).sum())
    scores = torch.from_numpy(np.eye(5, dtype=np.float32)[preds] * 0.9 + 0.02)
    names = [f"class {c}" for c in range(5)]
    assert write_confusion(tmp_path, [scores], torch.from_numpy(labels)[:, None], names) == ["confusion.csv", "confusion.png"]
    rows = list(csv.reader(open(tmp_path / "confusion.csv")))
    assert rows[0] == ["true/predicted"] + names
    assert np.array_equal(np.array([r[1:] for r in rows[1:]], dtype=int), counts)
    img = _png(tmp_path / "confusion.png")
    assert min(img.shape[:2]) >= 300
    # many classes: no tick labels, still a picture; two heads: one file pair each
    big = plots.confusion_matrix(rng.integers(0, 60, 500), rng.integers(0, 60, 500), 60)
    _png(plots.plot_confusion(big, tmp_path / "big.png", [f"c{i}" for i in range(60)]))
    two = write_confusion(tmp_path / "heads", [scores, scores[:, :3]], torch.stack([torch.from_numpy(labels),
                                                                                   torch.from_numpy(labels % 3)], 1))
    assert two == ["confusion_head0.csv", "confusion_head0.png", "confusion_head1.csv", "confusion_head1.png"]
    with pytest.raises(ValueError, match="outside 0..4"):
        plots.confusion_matrix([5], [0], 5)
