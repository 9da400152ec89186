"""Clip transforms draw their random parameters once per clip; mixup/cutmix never mix along T."""
import random

import numpy as np
import pytest
import torch
from timm.data import Mixup

from tada_zoo.data import EvalTransform, TrainTransform, VideoMixup, transforms_from_cfg

MEAN, STD = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)


def _clip(t=6, h=48, w=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def _normalise(frames_thwc):
    x = torch.from_numpy(frames_thwc).float() / 255
    return ((x - torch.tensor(MEAN)) / torch.tensor(STD)).permute(3, 0, 1, 2)


@pytest.mark.parametrize("seed", range(4))
def test_train_transform_same_params_for_every_frame(seed):
    """Identical frames in -> identical frames out, with every random op switched on."""
    random.seed(seed)
    np.random.seed(seed)
    frame = _clip(1, seed=seed)
    clip = np.repeat(frame, 6, axis=0)
    tf = TrainTransform(32, (36, 48), hflip=True, mean=MEAN, std=STD,
                        rand_augment="rand-m7-n4-mstd0.5-inc1", random_erasing=1.0)
    out = tf(clip)
    assert out.shape == (3, 6, 32, 32) and out.dtype == torch.float32
    for t in range(1, 6):
        torch.testing.assert_close(out[:, t], out[:, 0], rtol=0, atol=0)


def test_train_transform_crops_and_flips_the_source():
    """Without resizing (scale == frame height) the output is a crop of the input, maybe mirrored."""
    random.seed(0)
    clip = _clip(4, 32, 48)
    flipped = set()
    for hflip in (True, False):
        tf = TrainTransform(32, (32, 32), hflip=hflip, mean=MEAN, std=STD)
        for _ in range(20):
            out = tf(clip)
            ref = _normalise(clip)
            match = [(left, f) for left in range(17) for f in (False, True)
                     if torch.allclose(out, (ref[..., left:left + 32].flip(-1) if f else ref[..., left:left + 32]),
                                       atol=1e-5)]
            assert match, "output is not a crop of the input"
            flipped.add((hflip, match[0][1]))
    assert (True, True) in flipped and (True, False) in flipped and (False, True) not in flipped


def test_eval_three_crops_along_the_long_side():
    clip = _clip(4, 32, 64)
    out = EvalTransform(32, 32, num_crops=3, mean=MEAN, std=STD)(clip)
    assert out.shape == (3, 3, 4, 32, 32)
    ref = _normalise(clip)
    for k, left in enumerate((0, 16, 32)):
        torch.testing.assert_close(out[k], ref[..., left:left + 32])
    portrait = _clip(4, 64, 32).copy()
    out = EvalTransform(32, 32, num_crops=3, mean=MEAN, std=STD)(portrait)
    ref = _normalise(portrait)
    for k, top in enumerate((0, 16, 32)):
        torch.testing.assert_close(out[k], ref[..., top:top + 32, :])


def test_eval_resize_short_side():
    const = np.full((2, 48, 96, 3), 200, np.uint8)
    out = EvalTransform(24, 32, num_crops=1, mean=MEAN, std=STD)(torch.from_numpy(const))
    assert out.shape == (1, 3, 2, 24, 24)
    expected = (200 / 255 - torch.tensor(MEAN)) / torch.tensor(STD)
    torch.testing.assert_close(out[0, :, 0, 0, 0], expected)


def test_transforms_from_model_cfg():
    import tada_zoo  # noqa: F401
    from timm.models import get_pretrained_cfg

    k400 = get_pretrained_cfg("tada2d_r50_8f.k400")
    train = transforms_from_cfg(k400, train=True)
    assert train.crop_size == 224 and train.scale_range == (256, 320) and train.hflip
    assert train.mean == tuple(k400.mean) and train.std == tuple(k400.std)
    ev = transforms_from_cfg(k400, train=False, num_crops=3)
    assert (ev.crop_size, ev.short_side, ev.num_crops) == (256, 256, 3)
    assert not transforms_from_cfg(get_pretrained_cfg("tada2d_r50_8f.ssv2"), train=True).hflip
    assert transforms_from_cfg(dict(input_size=(3, 112, 112)), train=True, hflip=False).scale_range == (128, 160)


def _coded_batch(b=4, c=3, t=5, h=16, w=16):
    """Sample i has the value i everywhere, so the source of each mixed pixel is readable."""
    return torch.arange(b, dtype=torch.float32).view(b, 1, 1, 1, 1).expand(b, c, t, h, w).contiguous()


def test_cutmix_box_is_the_same_in_every_frame():
    np.random.seed(0)
    mix = VideoMixup(mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.0, num_classes=4)
    x, target = mix(_coded_batch(), torch.arange(4))
    for i in range(4):
        pasted = x[i] != i  # (C, T, H, W): pixels taken from the partner sample
        assert (pasted == pasted[:1, :1]).all(), "cut differs across channels or frames"
        area = pasted[0, 0].float().mean()
        assert 0 < area < 1
        ys, xs = pasted[0, 0].nonzero(as_tuple=True)
        assert pasted[0, 0, ys.min():ys.max() + 1, xs.min():xs.max() + 1].all()  # a rectangle
        assert target[i, i] == pytest.approx(1 - area.item())
        assert (x[i][pasted] == 3 - i).all()  # partner: flipped batch


def test_timm_cutmix_alone_would_cut_along_time():
    """Why VideoMixup exists: the same call on timm's Mixup cuts T instead of W."""
    np.random.seed(0)
    mix = Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.0, num_classes=4)
    x, _ = mix(_coded_batch(t=16), torch.arange(4))
    pasted = x[0] != 0
    assert not (pasted == pasted[:1, :1]).all()


def test_mixup_uses_one_lambda_for_all_frames():
    np.random.seed(1)
    mix = VideoMixup(mixup_alpha=0.8, cutmix_alpha=0.0, label_smoothing=0.0, num_classes=4)
    x, target = mix(_coded_batch() + 1, torch.arange(4))
    lam = target[0, 0].item()
    torch.testing.assert_close(x[0], torch.full_like(x[0], lam * 1 + (1 - lam) * 4))


def test_multi_head_targets():
    np.random.seed(2)
    mix = VideoMixup(num_classes=(5, 7), label_smoothing=0.1)
    x, (verb, noun) = mix(torch.randn(4, 3, 2, 8, 8), torch.tensor([[0, 1], [2, 3], [4, 5], [1, 6]]))
    assert verb.shape == (4, 5) and noun.shape == (4, 7)
    torch.testing.assert_close(verb.sum(1), torch.ones(4))
    torch.testing.assert_close(noun.sum(1), torch.ones(4))
    with pytest.raises(ValueError, match="even batch"):
        mix(torch.randn(3, 3, 2, 8, 8), torch.zeros(3, 2, dtype=torch.long))
