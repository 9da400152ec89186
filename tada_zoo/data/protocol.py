"""One place that turns a model's pretrained cfg (and the user's flags) into its data pipeline.

A pretrained tag's cfg records how the original code trained and tested those weights:
frames and sampling, the 30-fps window, the clips x crops of the reported accuracy, test
resize and crop, mean/std, and the training augmentation of its config. ``DataProtocol``
holds those facts; ``protocol_from_cfg`` reads them (flags override) and the protocol builds
the sampler-carrying ``VideoDataset`` and its transforms. ``train``, ``evaluate`` and
``extract`` all go through it, so a converted checkpoint sees the original's inputs.
"""
import os
from dataclasses import asdict, dataclass, replace
from typing import Mapping, Optional, Tuple

import torch

from .datasets import VideoDataset
from .transforms import DEFAULT_MEAN, DEFAULT_STD, EvalTransform, TrainTransform

__all__ = ["DataProtocol", "protocol_from_cfg", "protocol_cfg", "TRAINING_ONLY", "resolve_data_config",
           "create_transform", "default_frame_interval", "SSV2_FLIP_LABELS", "FLIP_LABELS"]

# the original's AUGMENTATION.SSV2_FLIP: classes that name a direction, swapped when the clip is mirrored
SSV2_FLIP_LABELS = {86: 87, 87: 86, 93: 94, 94: 93, 166: 167, 167: 166}
FLIP_LABELS = {"none": None, "ssv2": SSV2_FLIP_LABELS}

_INTERVALS = {8: 8, 16: 5, 32: 2}  # the paper's interval per clip length (Appendix C.1)


def default_frame_interval(num_frames: int) -> int:
    return _INTERVALS.get(num_frames, max(1, 64 // num_frames))


@dataclass(frozen=True)
class DataProtocol:
    """How clips are made for a model: sampling, test views, transforms (the original's names in comments)."""
    num_frames: int = 8  # DATA.NUM_INPUT_FRAMES
    sampling: str = "interval"  # DATA.SAMPLING_MODE: "interval" (interval_based) or "segment" (segment_based)
    frame_interval: int = 8  # DATA.SAMPLING_RATE, in frames at target_fps
    target_fps: Optional[float] = 30.0  # DATA.TARGET_FPS; None: count the file's own frames
    clips: int = 1  # TEST.NUM_ENSEMBLE_VIEWS
    crops: int = 1  # TEST.NUM_SPATIAL_CROPS
    test_short_side: int = 256  # DATA.TEST_SCALE
    test_crop: int = 256  # DATA.TEST_CROP_SIZE
    mean: Tuple[float, ...] = DEFAULT_MEAN  # DATA.MEAN
    std: Tuple[float, ...] = DEFAULT_STD  # DATA.STD
    train_crop: int = 224  # DATA.TRAIN_CROP_SIZE
    train_scale: Tuple[float, float] = (224, 340)  # DATA.TRAIN_JITTER_SCALES: short side px, or area if <= 1
    train_ratio: Tuple[float, float] = (0.75, 1.333)  # AUGMENTATION.RATIO (random-resized crop)
    hflip: bool = True  # RandomHorizontalFlipVideo, p=0.5 (every original training config); False: no flips at all
    flip_labels: Optional[str] = None  # AUGMENTATION.SSV2_FLIP on SSV2: "ssv2" (FLIP_LABELS)
    rand_augment: Optional[str] = None  # AUGMENTATION.AUTOAUGMENT.TYPE
    grayscale: float = 0.0  # AUGMENTATION.GRAYSCALE (with COLOR_AUG and COLOR_P 0: grayscale only)
    random_erasing: float = 0.0  # AUGMENTATION.RANDOM_ERASING.PROB

    def __post_init__(self):
        for name in ("num_frames", "frame_interval", "clips", "test_short_side", "test_crop", "train_crop"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.sampling not in ("interval", "segment"):
            raise ValueError(f"sampling must be 'interval' or 'segment', got {self.sampling!r}")
        if self.target_fps is not None and not self.target_fps > 0:
            raise ValueError(f"target_fps must be positive (or None), got {self.target_fps!r}")
        if self.crops not in (1, 3):
            raise ValueError(f"crops must be 1 or 3, got {self.crops!r}")
        if self.test_crop > self.test_short_side:
            raise ValueError(f"test crop {self.test_crop} is larger than the test short side {self.test_short_side}")
        if self.flip_labels == "none":
            object.__setattr__(self, "flip_labels", None)
        if self.flip_labels not in FLIP_LABELS and self.flip_labels is not None:
            raise ValueError(f"flip_labels must be one of {sorted(FLIP_LABELS)}, got {self.flip_labels!r}")

    def train_transform(self) -> TrainTransform:
        return TrainTransform(self.train_crop, self.train_scale, hflip=self.hflip, mean=self.mean, std=self.std,
                              rand_augment=self.rand_augment, random_erasing=self.random_erasing,
                              ratio=self.train_ratio, grayscale=self.grayscale)

    def eval_transform(self, crops: Optional[int] = None) -> EvalTransform:
        return EvalTransform(self.test_crop, self.test_short_side, num_crops=crops or self.crops,
                             mean=self.mean, std=self.std)

    def dataset(self, data_root=None, list_file=None, train: bool = False, clips: Optional[int] = None,
                crops: Optional[int] = None, shards: Optional[str] = None, seed: int = 0, shuffle_buffer: int = 64,
                **kwargs):
        """Training clips, or the test views (``clips`` x ``crops``, default: the protocol's). ``shards``
        (a WebDataset pattern, ``data.shards``) instead of ``data_root`` / ``list_file``: the same clips
        from the shards (``seed`` and ``shuffle_buffer``: training's shuffle)."""
        index = None
        if shards is not None:
            from .shards import read_shard_index

            index = read_shard_index(shards)
            data_root, list_file = os.path.dirname(index.index_file), index.index_file
            kwargs.update(samples=index.samples, check_files=False)
        ds = VideoDataset(
            data_root, list_file, self.num_frames, self.sampling, self.frame_interval, train=train,
            num_clips=1 if train else (clips or self.clips), target_fps=self.target_fps,
            transform=self.train_transform() if train else self.eval_transform(crops),
            flip_labels=FLIP_LABELS[self.flip_labels or "none"] if train and self.hflip else None, **kwargs)
        if index is None:
            return ds
        from .shards import ShardDataset

        return ShardDataset(ds, index, seed=seed, shuffle_buffer=shuffle_buffer)

    def describe(self, train: bool = False, clips: Optional[int] = None, crops: Optional[int] = None) -> str:
        """One line a user can check against the paper (printed by ``train`` and ``evaluate``)."""
        if self.sampling == "interval":  # e.g. "interval sampling, 8 frames every 8 at 30 fps"
            fps = f" at {self.target_fps:g} fps" if self.target_fps else ""
            clip = f"interval sampling, {self.num_frames} frames every {self.frame_interval}{fps}"
        else:
            clip = f"segment sampling, {self.num_frames} segments"
        if train:
            crop = (f"random-resized crop {self.train_crop} (area {self.train_scale[0]:g}-{self.train_scale[1]:g}, "
                    f"ratio {self.train_ratio[0]:g}-{self.train_ratio[1]:g})" if max(self.train_scale) <= 1 else
                    f"short side {self.train_scale[0]:g}-{self.train_scale[1]:g}, random crop {self.train_crop}")
            extra = [f"flip{' + ' + self.flip_labels + ' label swap' if self.flip_labels else ''}" if self.hflip
                     else "no flip"]
            extra += [f"RandAugment {self.rand_augment}"] if self.rand_augment else []
            extra += [f"grayscale p={self.grayscale:g}"] if self.grayscale else []
            extra += [f"random erasing p={self.random_erasing:g}"] if self.random_erasing else []
            return f"{clip}; {crop}, {', '.join(extra)}"
        clips, crops = clips or self.clips, crops or self.crops
        return (f"{clip}; {clips} clip{'s' * (clips > 1)} x {crops} "
                f"crop{'s' * (crops > 1)}, short side {self.test_short_side}, crop {self.test_crop}")

    def as_dict(self) -> dict:
        return asdict(self)


def _get(cfg, key, default=None):
    if cfg is None:
        return default
    value = cfg.get(key) if isinstance(cfg, Mapping) else getattr(cfg, key, None)
    return default if value is None else value


def protocol_from_cfg(pretrained_cfg=None, **overrides) -> DataProtocol:
    """The data protocol of a model's timm ``pretrained_cfg`` (dict or dataclass); ``overrides``
    that are not ``None`` win (command-line flags pass straight through).

    Consistent defaults follow an override: another ``num_frames`` without an interval gets
    the paper's interval for that length (8/5/2 for 8/16/32 frames); another ``train_crop``
    scales the training short-side range and the test sizes with it; another ``test_crop``
    keeps the cfg's crop fraction for the short side.
    """
    o = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(o) - set(DataProtocol.__dataclass_fields__)
    if unknown:
        raise TypeError(f"unknown data protocol fields: {sorted(unknown)}")
    cfg_frames = _get(pretrained_cfg, "num_frames", 8)
    num_frames = o.get("num_frames", cfg_frames)
    interval = _get(pretrained_cfg, "frame_interval") if num_frames == cfg_frames else None
    input_size = _get(pretrained_cfg, "input_size", (3, 224, 224))
    cfg_train_crop = int(input_size[-1])
    test_size = _get(pretrained_cfg, "test_input_size") or input_size
    pct = _get(pretrained_cfg, "test_crop_pct") or _get(pretrained_cfg, "crop_pct") or 1.0
    base = DataProtocol(
        num_frames=num_frames,
        sampling=_get(pretrained_cfg, "sampling", "interval"),
        frame_interval=interval or default_frame_interval(num_frames),
        target_fps=_get(pretrained_cfg, "target_fps", 30.0) or None,  # 0: the file's own frames (protocol_cfg)
        clips=_get(pretrained_cfg, "eval_clips", 1),
        crops=_get(pretrained_cfg, "eval_crops", 1),
        test_crop=int(test_size[-1]),
        test_short_side=int(round(int(test_size[-1]) / pct)),
        mean=tuple(_get(pretrained_cfg, "mean", DEFAULT_MEAN)),
        std=tuple(_get(pretrained_cfg, "std", DEFAULT_STD)),
        train_crop=cfg_train_crop,
        train_scale=tuple(_get(pretrained_cfg, "train_scale") or (round(224 * cfg_train_crop / 224),
                                                                   round(340 * cfg_train_crop / 224))),
        train_ratio=tuple(_get(pretrained_cfg, "train_ratio", (0.75, 1.333))),
        rand_augment=_get(pretrained_cfg, "rand_augment"),
        grayscale=_get(pretrained_cfg, "grayscale", 0.0),
    )
    if "train_crop" in o and o["train_crop"] != cfg_train_crop:
        f = o["train_crop"] / cfg_train_crop
        if max(base.train_scale) > 1 and "train_scale" not in o:
            o["train_scale"] = tuple(round(v * f) for v in base.train_scale)
        if "test_crop" not in o:
            o["test_crop"] = round(base.test_crop * f)
            o.setdefault("test_short_side", round(base.test_short_side * f))
    if "test_crop" in o and "test_short_side" not in o:
        o["test_short_side"] = int(round(o["test_crop"] / pct))
    if o.get("target_fps") == 0:  # 0 on the command line: count the file's own frames
        o["target_fps"] = None
    return replace(base, **o)


# protocol fields a pretrained cfg cannot hold: training-time choices of one run, not facts of the weights
TRAINING_ONLY = ("hflip", "flip_labels", "random_erasing")


def protocol_cfg(protocol: DataProtocol) -> dict:
    """The pretrained-cfg fields that ``protocol_from_cfg`` reads back as ``protocol`` (all but
    ``TRAINING_ONLY``): what a published fine-tuned model's ``config.json`` says about its inputs."""
    p = protocol
    return dict(num_frames=p.num_frames, sampling=p.sampling, frame_interval=p.frame_interval,
                target_fps=p.target_fps or 0, eval_clips=p.clips, eval_crops=p.crops,
                input_size=(3, p.train_crop, p.train_crop), test_input_size=(3, p.test_crop, p.test_crop),
                test_crop_pct=p.test_crop / p.test_short_side, mean=tuple(p.mean), std=tuple(p.std),
                train_scale=tuple(p.train_scale), train_ratio=tuple(p.train_ratio), rand_augment=p.rand_augment,
                grayscale=p.grayscale)


def _cfg_of(model_or_cfg):
    return getattr(model_or_cfg, "pretrained_cfg", model_or_cfg) if isinstance(model_or_cfg, torch.nn.Module) \
        else model_or_cfg


def resolve_data_config(model_or_cfg=None, **overrides) -> DataProtocol:
    """The video pipeline of a model (or its pretrained cfg): what ``timm.data.resolve_data_config``
    is for images. timm's own helper reads only the image fields and gives a per-frame 224 centre crop
    where a tag's protocol is e.g. 256 / 256 with 3 crops over 10 clips, 30-fps windows: use this one."""
    return protocol_from_cfg(_cfg_of(model_or_cfg), **overrides)


def create_transform(model_or_cfg=None, train: bool = False, crops: Optional[int] = None, **overrides):
    """The clip transform of a model's protocol (``timm.data.create_transform`` for video): training
    augmentation of its original config, or its test crops; ``(T, H, W, C)`` uint8 frames in."""
    protocol = resolve_data_config(model_or_cfg, **overrides)
    return protocol.train_transform() if train else protocol.eval_transform(crops)
