"""The one model builder of every family (timm's ``_builder``).

``build_video_model`` is timm's ``build_model_with_cfg``; when the pretrained weights are
neither on the Hugging Face Hub nor in the local cache it raises ``WeightsNotAvailableError``
with the local-conversion recipe instead of a bare 404.
"""
import dataclasses
import json
import logging
from pathlib import Path

import timm
from huggingface_hub.utils import (  # .utils has them in every release, .errors only from 0.25
    EntryNotFoundError, OfflineModeIsEnabled, RepositoryNotFoundError, RevisionNotFoundError)
from timm.models import PretrainedCfg, build_model_with_cfg, get_pretrained_cfg

from ._base import VideoFeatureDictNet
from ._cfg import VideoPretrainedCfg
from ._helpers import adapt_input_convs
from ._weights import WEIGHTS_NAME, WeightsNotAvailableError, find_local_weights, how_to_get, in_hf_cache, weights_help

__all__ = ["WEIGHTS_NAME", "WeightsNotAvailableError", "build_video_model", "video_cfg_from_config"]

_TIMM_FIELDS = {f.name for f in dataclasses.fields(PretrainedCfg)}
_HUB_MISSING = (EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError, OfflineModeIsEnabled)
_VIDEO_CFG_FIELDS = {f.name for f in dataclasses.fields(VideoPretrainedCfg)}
# timm's feature_cls names that apply to video maps: all come from forward_intermediates
_FEATURE_CLS = {"getter": "getter", "list": "getter", "dict": VideoFeatureDictNet}


def _cfg_for_message(variant: str, kwargs: dict) -> PretrainedCfg:
    """The pretrained cfg ``build_model_with_cfg`` was resolving: a cfg, a Hub config's dict or a tag."""
    cfg = kwargs.get("pretrained_cfg")
    if isinstance(cfg, dict):
        cfg = PretrainedCfg(**{k: v for k, v in cfg.items() if k in _TIMM_FIELDS})
    elif not isinstance(cfg, PretrainedCfg):
        try:
            cfg = get_pretrained_cfg(f"{variant}.{cfg}" if isinstance(cfg, str) and cfg else variant)
        except RuntimeError:
            cfg = None
    overlay = {k: v for k, v in (kwargs.get("pretrained_cfg_overlay") or {}).items() if hasattr(cfg, k)}
    return dataclasses.replace(cfg or PretrainedCfg(architecture=variant), **overlay)


def _config_video_entry(cfg: dict, cache_dir=None) -> dict:
    """The top-level ``"video"`` entry of the ``config.json`` a Hub / folder cfg came from (our
    converted repos keep the video facts there, out of plain timm's way; timm's loader drops it)."""
    if cfg.get("source") == "hf-hub" and cfg.get("hf_hub_id"):
        from timm.models._hub import download_from_hf

        path = download_from_hf(cfg["hf_hub_id"], "config.json", cache_dir=cache_dir)  # cached by timm just now
    elif cfg.get("source") == "local-dir" and cfg.get("file"):
        path = Path(cfg["file"]) / "config.json"
    else:
        return {}
    video = json.loads(Path(path).read_text()).get("video")
    return video if isinstance(video, dict) else {}


def video_cfg_from_config(cfg: dict, cache_dir=None) -> VideoPretrainedCfg:
    """A Hub / local-folder ``config.json``'s pretrained cfg (timm passes it as a dict) as a
    VideoPretrainedCfg: timm would build a plain ``PretrainedCfg``, which refuses the video facts
    that ``timm.models.save_for_hf`` writes into it. Facts in the config's ``"video"`` entry (our
    converted repos) are read back too. ``published``: True, these weights come with that config."""
    cfg = dict(_config_video_entry(cfg, cache_dir), **cfg)
    unknown = sorted(set(cfg) - _VIDEO_CFG_FIELDS)
    if unknown:
        where = cfg.get("hf_hub_id") or cfg.get("file") or "the model's config.json"
        raise ValueError(f"pretrained_cfg of {where} has fields neither timm {timm.__version__} nor tada-zoo know: "
                         f"{unknown} (written by a newer version?)")
    return VideoPretrainedCfg(**dict(cfg, published=True))


class _AdaptedStemWarnings(logging.Filter):
    """Drops timm's "weights already match the model ... Loading unchanged" warning for the stems
    that ``adapt_input_convs`` has just adapted (timm checks them after the filter ran)."""

    def __init__(self):
        super().__init__()
        self.adapted = set()

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not any(msg.startswith(f"Pretrained {name} weights already match") for name in self.adapted)


def _video_options(kwargs: dict) -> dict:
    """timm's build options that need a video answer: a config.json's cfg dict, ``feature_cls``,
    ``output_fmt`` of ``features_only`` and ``output_stride`` (ValueError for what does not apply,
    naming the alternative)."""
    if kwargs.get("output_stride") is not None:
        raise ValueError(f"output_stride={kwargs['output_stride']}: tada-zoo video models have a fixed output stride "
                         "(32; the patch size for TAdaFormer) and no dilated variant; drop the argument")
    kwargs.pop("output_stride", None)
    if isinstance(kwargs.get("pretrained_cfg"), dict):
        kwargs["pretrained_cfg"] = video_cfg_from_config(kwargs["pretrained_cfg"], kwargs.get("cache_dir"))
    feature_cls = kwargs.get("feature_cls")
    if kwargs.get("features_only") and isinstance(feature_cls, str):
        if feature_cls.lower() not in _FEATURE_CLS:
            raise ValueError(
                f"feature_cls={feature_cls!r} does not apply to tada-zoo video models: it takes module outputs, "
                "which are internal layouts (frames as batch, channels-last, tokens); use 'getter' (the default), "
                "'list' or 'dict': (B, C, T, H, W) maps from forward_intermediates")
        kwargs["feature_cls"] = _FEATURE_CLS[feature_cls.lower()]
    if kwargs.get("features_only") and "output_fmt" in kwargs:  # the maps' layout, not a model argument
        kwargs["feature_cfg"] = dict(kwargs.get("feature_cfg") or {}, output_fmt=kwargs.pop("output_fmt"))
    return kwargs


def _stem_adapting_filter(filter_fn, quiet: _AdaptedStemWarnings):
    """The family's ``pretrained_filter_fn``, then the 3D stems adapted to the model's ``in_chans``
    (timm adapts 2D stems itself and would re-initialise 3D ones)."""
    def fn(state_dict, model):
        if filter_fn is not None:
            state_dict = filter_fn(state_dict, model)
        base = ((getattr(model, "pretrained_cfg", None) or {}).get("input_size") or (3,))[0]
        quiet.adapted.update(adapt_input_convs(state_dict, model, base))
        return state_dict
    return fn


def _local_weights(variant: str, kwargs: dict) -> dict:
    """Weights from the local weights folder (``_weights``: converted, or an original converted on
    first use), looked up before the Hub. A tag with no source of weights, and unpublished weights
    that are not in the HF cache either, fail here without a network round trip."""
    if isinstance(kwargs.get("pretrained_cfg"), dict) or (kwargs.get("pretrained_cfg_overlay") or {}).get("file"):
        return kwargs  # a config.json's cfg (hf-hub:, local-dir:) or an explicit file: timm's own path
    cfg = _cfg_for_message(variant, kwargs)
    if not isinstance(cfg, VideoPretrainedCfg) or not cfg.tag:
        return kwargs
    name = f"{variant}.{cfg.tag}"
    path = find_local_weights(name, cfg)
    if path is not None:
        return dict(kwargs, pretrained_cfg_overlay=dict(kwargs.get("pretrained_cfg_overlay") or {}, file=str(path)))
    if not (cfg.hf_hub_id or cfg.url or cfg.file) or (
            not cfg.published and cfg.hf_hub_id and not in_hf_cache(cfg, kwargs.get("cache_dir"))):
        raise WeightsNotAvailableError(weights_help(name, cfg))
    return kwargs


def build_video_model(model_cls, variant: str, pretrained: bool, **kwargs):
    """``timm.models.build_model_with_cfg`` whose failure to find the weights on the Hub (or in
    the offline cache) says how to convert them locally instead of a bare 404.

    Also for video: a config.json's cfg becomes a ``VideoPretrainedCfg`` (``video_cfg_from_config``),
    the pretrained 3D stems adapt to another ``in_chans`` by timm's rule, and the feature options
    that do not apply are refused by name (docs/features.md).
    """
    if pretrained:
        kwargs = _local_weights(variant, kwargs)
    kwargs = _video_options(kwargs)
    quiet = _AdaptedStemWarnings()
    if pretrained:
        kwargs["pretrained_filter_fn"] = _stem_adapting_filter(kwargs.get("pretrained_filter_fn"), quiet)
    timm_log = logging.getLogger(build_model_with_cfg.__module__)
    timm_log.addFilter(quiet)
    try:
        return build_model_with_cfg(model_cls, variant, pretrained, **kwargs)
    except _HUB_MISSING as e:
        if not pretrained:
            raise
        cfg = _cfg_for_message(variant, kwargs)
        name = f"{variant}.{cfg.tag}" if cfg.tag else variant
        if getattr(cfg, "published", True) is False:
            why = f"the weights of {name} are not published on the Hugging Face Hub yet ({cfg.hf_hub_id})"
        else:
            why = f"could not fetch {cfg.hf_hub_id} from the Hugging Face Hub or the local cache ({type(e).__name__})"
        try:  # the registry knows the original file even when the cfg came from a Hub config
            recipe_cfg = get_pretrained_cfg(name) if cfg.tag else cfg
        except RuntimeError:
            recipe_cfg = cfg
        raise WeightsNotAvailableError(f"{why}; {how_to_get(name, recipe_cfg or cfg)}") from e
    finally:
        timm_log.removeFilter(quiet)
