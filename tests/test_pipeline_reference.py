"""The whole test-time path against the ORIGINAL pipeline on real files: decode, sample, resize, crop, normalise.

``tests/fixtures/reference/pipeline`` holds what the original TAdaConv code fed its model for four
videos (H.264 with B-frames at 25/30 fps, portrait, VP9 at 12 fps) under three released
configs (packed from ``shared/reference/pipeline`` by conversion/pack_reference_fixtures.py).
Each entry names the tada-zoo tag of those weights: the tag's own data protocol, with no
flag, must pick the same frames for every clip and produce the same normalised views.
Also the crop geometry against the original ``KineticsResizedCrop`` on more frame sizes.
"""
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

import tada_zoo  # noqa: F401  (registers the tags)
from original_fixtures import original_cases, pattern_clip
from tada_zoo.data import EvalTransform, open_video, protocol_from_cfg
from timm.models import get_pretrained_cfg

FIXTURES = Path(__file__).parent / "fixtures"
PIPELINE = FIXTURES / "reference" / "pipeline"
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "pipeline"
ENTRIES = json.loads((PIPELINE / "entries.json").read_text())
VIDEOS = sorted(p for p in (PIPELINE / "videos").iterdir() if p.suffix in (".mp4", ".webm"))
# float16 storage of the reference (<= 0.001 in normalised units) plus float32 rounding
ATOL = 2e-3


def _protocol(entry: dict):
    return protocol_from_cfg(get_pretrained_cfg(ENTRIES[entry]["tada_zoo_model"]))


@pytest.mark.parametrize("entry", sorted(ENTRIES))
def test_tag_protocol_is_the_original_config(entry):
    e, p = ENTRIES[entry], _protocol(entry)
    assert p.sampling == e["sampling_mode"].replace("_based", "") and p.num_frames == e["num_input_frames"]
    if p.sampling == "interval":
        assert p.frame_interval == e["sampling_rate"]
    assert p.target_fps == e["target_fps"]
    assert (p.test_short_side, p.test_crop) == (e["test_scale"], e["test_crop_size"])
    assert p.mean == pytest.approx(e["mean"]) and p.std == pytest.approx(e["std"])
    assert (p.clips, p.crops) == (e["clips_override"] or e["num_ensemble_views"], e["num_spatial_crops"])
    assert p.train_crop == e["train_crop_size"] and p.train_scale == tuple(e["train_jitter_scales"])


@pytest.mark.parametrize("entry", sorted(ENTRIES))
@pytest.mark.parametrize("video", VIDEOS, ids=lambda p: p.stem)
def test_views_are_the_originals(entry, video, tmp_path):
    ref = load_file(PIPELINE / entry / f"{video.stem}.safetensors")
    meta = json.loads((PIPELINE / entry / f"{video.stem}.json").read_text())
    protocol = _protocol(entry)
    (tmp_path / "list.txt").write_text(f"{video.name} 0\n")
    ds = protocol.dataset(video.parent, tmp_path / "list.txt", train=False)
    clips, crops = ref["thumbs"].shape[:2]
    assert (len(ds), ds.transform.num_crops) == (clips, crops)

    with open_video(video) as reader:
        assert (len(reader), reader.fps) == (meta["decord_len"], pytest.approx(meta["decord_fps"]))
        for c in range(clips):
            assert ds.indices(len(reader), c, reader.fps).tolist() == ref["indices"][c].tolist(), f"clip {c}"

    full = {}
    for c in range(clips):
        views = ds[c]["video"]  # (crops, 3, T, S, S): decoded, sampled, resized, cropped, normalised
        assert views.shape == (crops, *meta["view_shape"])
        thumbs = F.avg_pool2d(views.flatten(0, 2), 32, 32, ceil_mode=True).view_as(ref["thumbs"][c])
        torch.testing.assert_close(thumbs, ref["thumbs"][c].float(), atol=ATOL, rtol=0, msg=f"clip {c}")
        for v in meta["full_views"]:
            if v["clip"] == c:
                full[v["key"]] = views[v["crop"], :, v["t"]:v["t"] + 1]
    for key, view in full.items():
        torch.testing.assert_close(view[..., ::4, ::4], ref[f"{key}_s4"].float(), atol=ATOL, rtol=0, msg=key)
        if SHARED.is_dir():  # every pixel, where the full reference is beside the project
            torch.testing.assert_close(view, load_file(SHARED / entry / f"{video.stem}.safetensors")[key].float(),
                                       atol=ATOL, rtol=0, msg=key)


def test_crop_geometry_is_the_originals():
    """Landscape, portrait, square and odd frames; 1 and 3 crops; crop smaller than the short side."""
    cases = original_cases()["crops"]
    assert any(c["height"] == c["width"] and c["crop"] < c["short_side"] and c["crops"] == 3 for c in cases)
    for c in cases:
        tf = EvalTransform(c["crop"], c["short_side"], num_crops=c["crops"], mean=(0, 0, 0), std=(1, 1, 1))
        views = tf(pattern_clip(1, c["height"], c["width"]))
        s = c["subsample"]
        for k, expected in enumerate(c["views"]):
            got = views[k][..., ::s, ::s].flatten()
            torch.testing.assert_close(got, torch.tensor(expected), atol=1e-5, rtol=0,
                                       msg=f"{c['height']}x{c['width']} -> {c['short_side']}/{c['crop']}, crop {k}")


@pytest.mark.parametrize("tag, facts", sorted(original_cases()["configs"].items()), ids=lambda v: v if isinstance(v, str) else "")
def test_tag_protocol_is_its_released_config(tag, facts):
    """Every data value of the 13 released configs (merged by the original Config class) is the tag's
    protocol: sampling, 30-fps window, test resize / crop, statistics and the training augmentation."""
    from tada_zoo.engine.recipes import RECIPES, recipe_for

    p = protocol_from_cfg(get_pretrained_cfg(tag))
    assert p.sampling == facts["sampling_mode"].replace("_based", "") and p.num_frames == facts["num_input_frames"]
    if p.sampling == "interval":
        assert p.frame_interval == facts["sampling_rate"] and not facts["minus_interval"]
    assert p.target_fps == facts["target_fps"]
    assert (p.test_short_side, p.test_crop) == (facts["test_scale"], facts["test_crop_size"])
    assert p.mean == pytest.approx(facts["mean"]) and p.std == pytest.approx(facts["std"])
    tf = p.train_transform()
    assert tf.crop_size == facts["train_crop_size"] and p.train_scale == tuple(facts["train_jitter_scales"])
    assert tf.resized_crop == (facts["train_jitter_scales"][0] <= 1)
    if tf.resized_crop:
        assert tf.ratio == tuple(facts["ratio"])
    assert p.rand_augment == facts["autoaugment"]
    assert not facts["color_aug"] or facts["color_p"] == 0  # colour jitter never fires: grayscale only
    assert p.grayscale == (facts["grayscale"] if facts["color_aug"] else 0)
    assert p.random_erasing == facts["random_erasing"] and not facts["mixup"] and not facts["cutmix"]
    assert p.hflip  # RandomHorizontalFlipVideo is in every training transform
    # SSV2_FLIP acts when the training set is SSV2: the recipe for that dataset turns it on
    swap = facts["ssv2_flip"] and "ssv2" in facts["train_dataset"]
    assert (RECIPES[recipe_for(tag)[0]]["flip_labels"] == "ssv2") == swap
