"""What the model layer knows besides the networks: pretrained cfgs with the video facts users
need, the papers, and what each family file declares about itself (``FAMILY``)."""
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Tuple

from timm.models import PretrainedCfg, generate_default_cfgs

__all__ = ["HUB_ORG", "VideoPretrainedCfg", "VideoFamily", "PAPERS", "video_cfg", "generate_video_cfgs",
           "V2_TRAIN_AUG"]

HUB_ORG = "tada-zoo"  # Hugging Face organisation of the converted checkpoints

KINETICS_MEAN = (0.45, 0.45, 0.45)
KINETICS_STD = (0.225, 0.225, 0.225)

# training augmentation of every TAdaConvNeXtV2 / TAdaFormer config of the original (K400 and SSV2):
# TRAIN_JITTER_SCALES [0.08, 1.0] (random-resized crop), RATIO [0.75, 1.333], AUTOAUGMENT
# rand-m9-n4-mstd0.5-inc1, COLOR_AUG with COLOR_P 0 and GRAYSCALE 0.2 (grayscale only)
V2_TRAIN_AUG = dict(train_scale=(0.08, 1.0), train_ratio=(0.75, 1.333), rand_augment="rand-m9-n4-mstd0.5-inc1",
                    grayscale=0.2)


@dataclass(frozen=True)
class VideoFamily:
    """What a family file declares about itself as ``FAMILY``, so that nothing outside it needs
    a table of families: its display name (``names`` maps architecture prefixes to the names
    of sub-families, e.g. ``tadaconvnextv2`` -> "TAdaConvNeXtV2"), the key of its default
    training recipes per dataset (``tada_zoo.engine.recipes``; used where a tag names none) and how 2D ImageNet weights inflate into
    its models (``inflate(model, state_dict_2d) -> model``, or None)."""
    name: str
    recipe: str = "tada2d"
    inflate: Optional[Callable] = None
    names: Dict[str, str] = field(default_factory=dict)

    def display_name(self, arch: str) -> str:
        prefixes = sorted((p for p in self.names if arch.startswith(p)), key=len)
        return self.names[prefixes[-1]] if prefixes else self.name


# BibTeX of the papers a cfg's ``paper_ids`` can name (model cards cite them)
PAPERS = {
    "arXiv:2110.06178": """@inproceedings{huang2022tada,
  title={{TAda}! Temporally-Adaptive Convolutions for Video Understanding},
  author={Huang, Ziyuan and Zhang, Shiwei and Pan, Liang and Qing, Zhiwu and Tang, Mingqian and Liu, Ziwei and Ang Jr, Marcelo H.},
  booktitle={International Conference on Learning Representations (ICLR)},
  year={2022}
}""",
    "arXiv:2308.05787": """@article{huang2023tadaconvv2,
  title={Temporally-Adaptive Models for Efficient Video Understanding},
  author={Huang, Ziyuan and Zhang, Shiwei and Pan, Liang and Qing, Zhiwu and Zhang, Yingya and Liu, Ziwei and Ang Jr, Marcelo H.},
  journal={arXiv preprint arXiv:2308.05787},
  year={2023}
}""",
}


@dataclass
class VideoPretrainedCfg(PretrainedCfg):
    """timm's ``PretrainedCfg`` with how the weights were trained and evaluated.

    ``model.pretrained_cfg`` then says how to feed the model (frames, sampling, views,
    augmentation: the original config's values, read by ``tada_zoo.data.protocol_from_cfg``)
    and what the original code base reported for these weights.
    """
    num_frames: Optional[int] = None  # frames per clip the weights were trained on
    sampling: Optional[str] = None  # "interval" (Kinetics) or "segment" (SSV2)
    frame_interval: Optional[int] = None  # for interval sampling, in frames at target_fps
    target_fps: Optional[float] = 30.0  # DATA.TARGET_FPS of every original config
    dataset: Optional[str] = None
    eval_clips: Optional[int] = None  # views of the reported accuracy: clips x crops
    eval_crops: Optional[int] = None
    train_scale: Optional[Tuple[float, float]] = None  # DATA.TRAIN_JITTER_SCALES (px, or area if <= 1)
    train_ratio: Optional[Tuple[float, float]] = None  # AUGMENTATION.RATIO of the random-resized crop
    rand_augment: Optional[str] = None  # AUGMENTATION.AUTOAUGMENT.TYPE
    grayscale: Optional[float] = None  # AUGMENTATION.GRAYSCALE probability
    top1: Optional[float] = None
    top5: Optional[float] = None
    original_file: Optional[str] = None  # name of the released original checkpoint
    original_url: Optional[str] = None
    init: Optional[str] = None  # what the original training started from
    train_recipe: Optional[str] = None  # the original config these weights were trained with (engine.recipes)
    init_license: Optional[str] = None  # licence of those starting weights
    published: bool = False  # converted weights are on the Hub (else loading explains how to convert;
    # timm.list_pretrained lists every tag with a Hub id, tada_zoo.list_published only these)


def video_cfg(**kwargs) -> VideoPretrainedCfg:
    """Defaults for a video model; ``hf_hub_id='tada-zoo/'`` gets ``<arch>.<tag>`` appended by
    ``generate_video_cfgs`` (timm only completes its own ``'timm/'`` prefix). ``pool_size`` is
    timm's: the ``(H, W)`` of the last feature map at ``input_size`` (stride 32 unless given);
    its time size depends on the clip length."""
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
        train_scale=(224, 340),  # the original ResNet configs: short side in [224, 340], crop 224
        license="apache-2.0",
        first_conv="conv1",
        classifier="fc",
        paper_ids="arXiv:2110.06178",
        paper_name="TAda! Temporally-Adaptive Convolutions for Video Understanding",
    )
    cfg.update(kwargs)
    cfg.setdefault("pool_size", tuple(s // 32 for s in cfg["input_size"][1:]))
    return VideoPretrainedCfg(**cfg)


def generate_video_cfgs(cfgs: dict):
    """``timm.models.generate_default_cfgs`` that completes ``hf_hub_id='tada-zoo/'`` to
    ``tada-zoo/<arch>.<tag>`` (the Hub repo of those weights)."""
    for name, cfg in cfgs.items():
        if isinstance(cfg, PretrainedCfg) and cfg.hf_hub_id and cfg.hf_hub_id.endswith("/"):
            cfg.hf_hub_id += name
    return generate_default_cfgs(cfgs)
