"""Clip transforms: every random parameter is drawn once per clip and applied to every frame.

Input: decoded frames, uint8 ``(T, H, W, C)`` numpy array or torch tensor. Output: float
``(C, T, H, W)`` normalised with the model's mean/std (``EvalTransform``: one clip per
spatial crop, ``(num_crops, C, T, H, W)``). Geometry follows the original TAdaConv code:
resize the short side (bilinear, no antialias), then crop.
"""
import random
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from timm.data import Mixup
from timm.data.mixup import mixup_target

__all__ = ["TrainTransform", "EvalTransform", "transforms_from_cfg", "VideoMixup", "to_float_frames",
           "resize_short_side", "DEFAULT_MEAN", "DEFAULT_STD"]

DEFAULT_MEAN = (0.45, 0.45, 0.45)  # Kinetics statistics of the original code base
DEFAULT_STD = (0.225, 0.225, 0.225)


def to_float_frames(frames: Union[np.ndarray, torch.Tensor]) -> torch.Tensor:
    """uint8 ``(T, H, W, C)`` -> float ``(T, C, H, W)`` in [0, 1]."""
    if isinstance(frames, np.ndarray):
        frames = torch.from_numpy(np.ascontiguousarray(frames))
    if frames.ndim != 4 or frames.shape[-1] not in (1, 3):
        raise ValueError(f"expected frames of shape (T, H, W, C) with C in (1, 3), got {tuple(frames.shape)}")
    x = frames.permute(0, 3, 1, 2)
    return x.float().div_(255) if x.dtype == torch.uint8 else x.float()


def resize_short_side(x: torch.Tensor, short_side: int) -> torch.Tensor:
    """Resize ``(T, C, H, W)`` so that the shorter side is ``short_side`` (the original's rounding)."""
    h, w = x.shape[-2:]
    if h < w:
        size = (int(short_side), int(w / h * short_side))
    else:
        size = (int(h / w * short_side), int(short_side))
    if size == (h, w):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def _normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    """``(T, C, H, W)`` in [0, 1] -> normalised ``(C, T, H, W)``."""
    mean = torch.as_tensor(mean, dtype=x.dtype).view(1, -1, 1, 1)
    std = torch.as_tensor(std, dtype=x.dtype).view(1, -1, 1, 1)
    return ((x - mean) / std).permute(1, 0, 2, 3).contiguous()


class ClipRandAugment:
    """timm's RandAugment with the same ops and magnitudes on every frame of a clip.

    timm draws its random choices from ``random`` and ``np.random``; replaying the same
    generator state for each frame makes every frame see the same draws.
    """

    def __init__(self, config_str: str, mean=DEFAULT_MEAN):
        from timm.data.auto_augment import rand_augment_transform

        hparams = dict(translate_const=100, img_mean=tuple(int(round(255 * m)) for m in mean))
        self.ra = rand_augment_transform(config_str, hparams)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        from PIL import Image

        py_state, np_state = random.getstate(), np.random.get_state()
        out = []
        for f in frames:
            random.setstate(py_state)
            np.random.set_state(np_state)
            out.append(np.asarray(self.ra(Image.fromarray(f))))
        return np.stack(out)


class TrainTransform:
    """Random short-side resize in ``scale_range``, random ``crop_size`` crop, optional
    horizontal flip, RandAugment, normalisation and random erasing, same draws for all frames.

    Keep ``hflip=False`` for datasets whose labels say left or right (Something-Something).
    """

    def __init__(self, crop_size: int = 224, scale_range: Tuple[int, int] = (256, 320), hflip: bool = True,
                 mean: Sequence[float] = DEFAULT_MEAN, std: Sequence[float] = DEFAULT_STD,
                 rand_augment: Optional[str] = None, random_erasing: float = 0.0,
                 random_erasing_mode: str = "const"):
        if scale_range[0] > scale_range[1]:
            raise ValueError(f"scale_range must be (min, max), got {scale_range}")
        self.crop_size = int(crop_size)
        self.scale_range = (max(scale_range[0], crop_size), max(scale_range[1], crop_size))
        self.hflip = hflip
        self.mean, self.std = tuple(mean), tuple(std)
        self.rand_augment = ClipRandAugment(rand_augment, mean) if rand_augment else None
        self.random_erasing = None
        if random_erasing > 0:
            from timm.data.random_erasing import RandomErasing

            self.random_erasing = RandomErasing(random_erasing, mode=random_erasing_mode, device="cpu")

    def __call__(self, frames) -> torch.Tensor:
        x = to_float_frames(frames)
        x = resize_short_side(x, int(random.uniform(*self.scale_range)))
        h, w = x.shape[-2:]
        top = int(random.uniform(0, h - self.crop_size))
        left = int(random.uniform(0, w - self.crop_size))
        x = x[..., top:top + self.crop_size, left:left + self.crop_size]
        if self.hflip and random.random() < 0.5:
            x = x.flip(-1)
        if self.rand_augment is not None:
            u8 = x.mul(255).round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
            x = to_float_frames(self.rand_augment(u8))
        x = _normalize(x, self.mean, self.std)
        if self.random_erasing is not None:
            c, t, h, w = x.shape
            self.random_erasing(x.view(c * t, h, w))  # one box through all frames and channels
        return x

    def __repr__(self):
        return (f"{type(self).__name__}(crop_size={self.crop_size}, scale_range={self.scale_range}, "
                f"hflip={self.hflip}, rand_augment={self.rand_augment is not None}, "
                f"random_erasing={self.random_erasing})")


class EvalTransform:
    """Resize the short side to ``short_side``, then 1 centre crop or 3 crops along the long
    side (start, centre, end) of ``crop_size``; returns ``(num_crops, C, T, H, W)``."""

    def __init__(self, crop_size: int = 256, short_side: int = 256, num_crops: int = 1,
                 mean: Sequence[float] = DEFAULT_MEAN, std: Sequence[float] = DEFAULT_STD):
        if num_crops not in (1, 3):
            raise ValueError(f"num_crops must be 1 or 3, got {num_crops}")
        if crop_size > short_side:
            raise ValueError(f"crop_size {crop_size} is larger than short_side {short_side}")
        self.crop_size, self.short_side, self.num_crops = int(crop_size), int(short_side), num_crops
        self.mean, self.std = tuple(mean), tuple(std)

    def crop_offsets(self, h: int, w: int):
        """``(top, left)`` of each crop in a ``(h, w)`` frame already resized."""
        y_max, x_max = h - self.crop_size, w - self.crop_size
        if self.num_crops == 1:
            return [(y_max // 2, x_max // 2)]
        if h > w:  # portrait: crops along the height
            return [(0, x_max // 2), (y_max // 2, x_max // 2), (y_max, x_max // 2)]
        return [(y_max // 2, 0), (y_max // 2, x_max // 2), (y_max // 2, x_max)]

    def __call__(self, frames) -> torch.Tensor:
        x = resize_short_side(to_float_frames(frames), self.short_side)
        c = self.crop_size
        crops = [x[..., t:t + c, l:l + c] for t, l in self.crop_offsets(*x.shape[-2:])]
        return torch.stack([_normalize(v, self.mean, self.std) for v in crops])

    def __repr__(self):
        return f"{type(self).__name__}(crop_size={self.crop_size}, short_side={self.short_side}, num_crops={self.num_crops})"


def _cfg_get(cfg, key, default=None):
    if cfg is None:
        return default
    if isinstance(cfg, dict):
        return cfg.get(key, default)
    return getattr(cfg, key, default)


def _labels_have_sides(cfg) -> bool:
    """Something-Something labels say left / right, so flipping would change them."""
    return str(_cfg_get(cfg, "dataset", "") or "").lower().startswith(("ssv2", "something"))


def transforms_from_cfg(pretrained_cfg, train: bool, **overrides):
    """TrainTransform / EvalTransform matching a model's timm ``pretrained_cfg`` (dict or dataclass).

    mean/std come from the cfg; the train crop is ``input_size``, the test crop
    ``test_input_size`` resized from a short side of crop / ``test_crop_pct``; the train
    scale range is the original ``(256, 320)`` scaled to the crop. Horizontal flips are off
    for Something-Something weights (``dataset == "ssv2"``). ``overrides`` win.
    """
    mean = _cfg_get(pretrained_cfg, "mean", DEFAULT_MEAN)
    std = _cfg_get(pretrained_cfg, "std", DEFAULT_STD)
    input_size = _cfg_get(pretrained_cfg, "input_size", (3, 224, 224))
    if train:
        crop = int(input_size[-1])
        kwargs = dict(crop_size=crop, scale_range=(round(256 * crop / 224), round(320 * crop / 224)),
                      hflip=not _labels_have_sides(pretrained_cfg), mean=mean, std=std)
        kwargs.update(overrides)
        return TrainTransform(**kwargs)
    test_size = _cfg_get(pretrained_cfg, "test_input_size", None) or input_size
    crop = int(test_size[-1])
    pct = _cfg_get(pretrained_cfg, "test_crop_pct", None) or _cfg_get(pretrained_cfg, "crop_pct", None) or 1.0
    kwargs = dict(crop_size=crop, short_side=int(round(crop / pct)), num_crops=1, mean=mean, std=std)
    kwargs.update(overrides)
    return EvalTransform(**kwargs)


class VideoMixup(Mixup):
    """timm's Mixup / CutMix on video batches ``(B, C, T, H, W)``.

    timm cuts ``x[:, :, y0:y1, x0:x1]``, i.e. along T and H on a 5D tensor. Folding
    ``(C, T)`` into one channel axis makes its box cover H and W of every frame, so a
    CutMix patch is the same in all frames and nothing is mixed along time.

    ``num_classes`` may be a tuple for multi-head labels (EPIC-KITCHENS verb + noun):
    targets ``(B, heads)`` then give a tuple of soft targets, one ``(B, N_k)`` per head,
    all mixed with the same lambda as the clips.
    """

    def __init__(self, mixup_alpha: float = 0.8, cutmix_alpha: float = 1.0, cutmix_minmax=None,
                 prob: float = 1.0, switch_prob: float = 0.5, mode: str = "batch", correct_lam: bool = True,
                 label_smoothing: float = 0.1, num_classes: Union[int, Sequence[int]] = 400):
        super().__init__(mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha, cutmix_minmax=cutmix_minmax,
                         prob=prob, switch_prob=switch_prob, mode=mode, correct_lam=correct_lam,
                         label_smoothing=label_smoothing, num_classes=num_classes)

    def __call__(self, x: torch.Tensor, target: torch.Tensor):
        if x.ndim != 5:
            raise ValueError(f"VideoMixup expects (B, C, T, H, W), got shape {tuple(x.shape)}")
        if len(x) % 2:
            raise ValueError(f"mixup/cutmix needs an even batch size, got {len(x)} (use drop_last=True)")
        b, c, t, h, w = x.shape
        x4 = x.reshape(b, c * t, h, w)
        if isinstance(self.num_classes, (tuple, list)):
            if target.ndim != 2 or target.shape[1] != len(self.num_classes):
                raise ValueError(f"{len(self.num_classes)} heads need targets of shape (B, {len(self.num_classes)}), "
                                 f"got {tuple(target.shape)}")
            lam = self._mix_elem(x4) if self.mode == "elem" else \
                self._mix_pair(x4) if self.mode == "pair" else self._mix_batch(x4)
            target = tuple(mixup_target(target[:, k], n, lam, self.label_smoothing)
                           for k, n in enumerate(self.num_classes))
        else:
            x4, target = super().__call__(x4, target)
        return x4.view(b, c, t, h, w), target
