"""Clip transforms: every random parameter is drawn once per clip and applied to every frame.

Input: decoded frames, uint8 ``(T, H, W, C)`` numpy array or torch tensor. Output: float
``(C, T, H, W)`` normalised with the model's mean/std (``EvalTransform``: one clip per
spatial crop, ``(num_crops, C, T, H, W)``). Both are the original TAdaConv code's
(``tadaconv/datasets/utils/transformations.py`` and ``base_dataset._config_transform``):
resize the short side (bilinear, no antialias), then crop. Which parameters a model uses
is decided in one place, ``tada_zoo.data.protocol``.
"""
import random
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from timm.data import Mixup
from timm.data.mixup import mixup_target

__all__ = ["TrainTransform", "EvalTransform", "VideoMixup", "to_float_frames",
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

    Set up like the original's ``creat_auto_augmentation``: translations up to 45 % of the
    crop, the dataset mean as fill colour, bicubic resampling; float frames go to uint8 by
    truncation and back, as the original's video RandAugment does. timm draws its random
    choices from ``random`` and ``np.random``; replaying the same generator state for each
    frame makes every frame see the same draws.
    """

    def __init__(self, config_str: str, crop_size: int = 224, mean=DEFAULT_MEAN):
        from PIL import Image
        from timm.data.auto_augment import rand_augment_transform

        hparams = dict(translate_const=int(crop_size * 0.45), img_mean=tuple(min(255, round(255 * m)) for m in mean),
                       interpolation=Image.BICUBIC)
        self.ra = rand_augment_transform(config_str, hparams)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``(T, C, H, W)`` float in [0, 1] -> the same, augmented."""
        from PIL import Image

        frames = (x.permute(0, 2, 3, 1) * 255).numpy().astype(np.uint8)
        py_state, np_state = random.getstate(), np.random.get_state()
        out = []
        for f in frames:
            random.setstate(py_state)
            np.random.set_state(np_state)
            out.append(np.asarray(self.ra(Image.fromarray(f)), dtype=np.float32))
        return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).div_(255)


def _grayscale(x: torch.Tensor) -> torch.Tensor:
    """``(T, 3, H, W)`` -> ITU-R 601-2 luma in all three channels (the original's ``rgb_to_grayscale``)."""
    luma = torch.einsum("tchw,c->thw", x, torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype))
    return luma.unsqueeze(1).expand_as(x).contiguous()


class TrainTransform:
    """The original training augmentation, with the same random draws for every frame.

    In the original's order: horizontal flip (p=0.5), then either a random short side in
    ``scale_range`` and a random ``crop_size`` crop (``TRAIN_JITTER_SCALES`` in pixels, e.g.
    TAda2D's [224, 340]) or, when ``scale_range`` is an area fraction (both values <= 1, e.g.
    TAdaConvNeXtV2 / TAdaFormer's [0.08, 1]), a random-resized crop with aspect ratios in
    ``ratio``; then RandAugment, grayscale with probability ``grayscale``, normalisation and
    random erasing (one box through all frames). Output ``(C, T, H, W)``.
    """

    def __init__(self, crop_size: int = 224, scale_range: Tuple[float, float] = (224, 340), hflip: bool = True,
                 mean: Sequence[float] = DEFAULT_MEAN, std: Sequence[float] = DEFAULT_STD,
                 rand_augment: Optional[str] = None, random_erasing: float = 0.0,
                 random_erasing_mode: str = "const", ratio: Tuple[float, float] = (0.75, 1.333),
                 grayscale: float = 0.0):
        lo, hi = scale_range
        if not 0 < lo <= hi:
            raise ValueError(f"scale_range must be (min, max) with 0 < min <= max, got {scale_range}")
        self.crop_size = int(crop_size)
        self.resized_crop = hi <= 1  # area fractions, as the original decides by TRAIN_JITTER_SCALES[0] <= 1
        if self.resized_crop:
            self.scale_range = (float(lo), float(hi))
        elif lo <= 1:
            raise ValueError(f"scale_range {scale_range} mixes an area fraction and a short side in pixels")
        else:  # short sides in pixels; never below the crop
            self.scale_range = (max(lo, crop_size), max(hi, crop_size))
        if not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"ratio must be (min, max) with 0 < min <= max, got {ratio}")
        if not 0 <= grayscale <= 1:
            raise ValueError(f"grayscale must be a probability, got {grayscale}")
        self.ratio, self.grayscale = (float(ratio[0]), float(ratio[1])), float(grayscale)
        self.hflip = hflip
        self.mean, self.std = tuple(mean), tuple(std)
        self.rand_augment = ClipRandAugment(rand_augment, crop_size, mean) if rand_augment else None
        self.random_erasing = None
        if random_erasing > 0:
            from timm.data.random_erasing import RandomErasing

            self.random_erasing = RandomErasing(random_erasing, mode=random_erasing_mode, device="cpu")

    def crop_box(self, h: int, w: int) -> Tuple[int, int, int, int]:
        """``(top, left, height, width)`` of a random-resized crop (torchvision's rule)."""
        from torchvision.transforms import RandomResizedCrop

        return tuple(RandomResizedCrop.get_params(torch.empty(0, h, w), list(self.scale_range), list(self.ratio)))

    def __call__(self, frames) -> torch.Tensor:
        x = to_float_frames(frames)
        if self.hflip and random.random() < 0.5:
            x = x.flip(-1)
        c = self.crop_size
        if self.resized_crop:
            top, left, h, w = self.crop_box(*x.shape[-2:])
            x = F.interpolate(x[..., top:top + h, left:left + w], size=(c, c), mode="bilinear", align_corners=False)
        else:
            x = resize_short_side(x, int(random.uniform(*self.scale_range)))
            h, w = x.shape[-2:]
            top = int(random.uniform(0, h - c))
            left = int(random.uniform(0, w - c))
            x = x[..., top:top + c, left:left + c]
        if self.rand_augment is not None:
            x = self.rand_augment(x)
        if self.grayscale and random.random() < self.grayscale and x.shape[1] == 3:
            x = _grayscale(x)
        x = _normalize(x, self.mean, self.std)
        if self.random_erasing is not None:
            c, t, h, w = x.shape
            self.random_erasing(x.view(c * t, h, w))  # one box through all frames and channels
        return x

    def __repr__(self):
        crop = (f"random_resized_crop(scale={self.scale_range}, ratio={self.ratio})" if self.resized_crop
                else f"short_side_jitter{self.scale_range}")
        return (f"{type(self).__name__}(crop_size={self.crop_size}, {crop}, hflip={self.hflip}, "
                f"rand_augment={self.rand_augment is not None}, grayscale={self.grayscale}, "
                f"random_erasing={self.random_erasing})")


class EvalTransform:
    """The original test transform (``KineticsResizedCrop._get_controlled_crop``): resize the
    short side to ``short_side``, then 1 centre crop or 3 crops of ``crop_size`` (left /
    centre / right on landscape frames, top / centre / bottom on portrait and square ones);
    returns ``(num_crops, C, T, H, W)``."""

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
        if w <= h:  # the width is the short side: crops along the height (the original's test)
            return [(0, x_max // 2), (y_max // 2, x_max // 2), (y_max, x_max // 2)]
        return [(y_max // 2, 0), (y_max // 2, x_max // 2), (y_max // 2, x_max)]

    def __call__(self, frames) -> torch.Tensor:
        x = resize_short_side(to_float_frames(frames), self.short_side)
        c = self.crop_size
        crops = [x[..., t:t + c, l:l + c] for t, l in self.crop_offsets(*x.shape[-2:])]
        return torch.stack([_normalize(v, self.mean, self.std) for v in crops])

    def __repr__(self):
        return f"{type(self).__name__}(crop_size={self.crop_size}, short_side={self.short_side}, num_crops={self.num_crops})"


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
