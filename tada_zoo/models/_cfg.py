"""Pretrained-cfg helpers shared by every family: timm's cfg plus the video facts users need."""
from dataclasses import dataclass
from typing import Optional

from timm.models import PretrainedCfg, generate_default_cfgs

__all__ = ["HUB_ORG", "VideoPretrainedCfg", "video_cfg", "generate_video_cfgs"]

HUB_ORG = "tada-zoo"  # Hugging Face organisation of the converted checkpoints

KINETICS_MEAN = (0.45, 0.45, 0.45)
KINETICS_STD = (0.225, 0.225, 0.225)


@dataclass
class VideoPretrainedCfg(PretrainedCfg):
    """timm's ``PretrainedCfg`` with how the weights were trained and evaluated.

    ``model.pretrained_cfg`` then says how to feed the model (frames, sampling) and what
    the original code base reported for these weights.
    """
    num_frames: Optional[int] = None  # frames per clip the weights were trained on
    sampling: Optional[str] = None  # "interval" (Kinetics) or "segment" (SSV2)
    frame_interval: Optional[int] = None  # for interval sampling
    dataset: Optional[str] = None
    eval_clips: Optional[int] = None  # views of the reported accuracy: clips x crops
    eval_crops: Optional[int] = None
    top1: Optional[float] = None
    top5: Optional[float] = None
    original_file: Optional[str] = None  # name of the released original checkpoint
    original_url: Optional[str] = None
    init: Optional[str] = None  # what the original training started from
    init_license: Optional[str] = None  # licence of those starting weights
    published: bool = False  # converted weights are on the Hub (else loading explains how to convert)


def video_cfg(**kwargs) -> VideoPretrainedCfg:
    """Defaults for a video model; ``hf_hub_id='tada-zoo/'`` gets ``<arch>.<tag>`` appended by
    ``generate_video_cfgs`` (timm only completes its own ``'timm/'`` prefix)."""
    cfg = dict(
        hf_hub_id=f"{HUB_ORG}/",
        hf_hub_filename="model.safetensors",  # safetensors only, never a pickle
        num_classes=400,
        input_size=(3, 224, 224),
        test_input_size=(3, 256, 256),
        crop_pct=224 / 256,
        test_crop_pct=1.0,
        interpolation="bilinear",
        mean=KINETICS_MEAN,
        std=KINETICS_STD,
        license="apache-2.0",
        first_conv="conv1",
        classifier="fc",
        paper_ids="arXiv:2110.06178",
        paper_name="TAda! Temporally-Adaptive Convolutions for Video Understanding",
    )
    cfg.update(kwargs)
    return VideoPretrainedCfg(**cfg)


def generate_video_cfgs(cfgs: dict):
    """``timm.models.generate_default_cfgs`` that completes ``hf_hub_id='tada-zoo/'`` to
    ``tada-zoo/<arch>.<tag>`` (the Hub repo of those weights)."""
    for name, cfg in cfgs.items():
        if isinstance(cfg, PretrainedCfg) and cfg.hf_hub_id and cfg.hf_hub_id.endswith("/"):
            cfg.hf_hub_id += name
    return generate_default_cfgs(cfgs)
