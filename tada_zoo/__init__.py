"""tada-zoo: temporally-adaptive video networks as timm models.

``import tada_zoo`` registers every model, after which ``timm.create_model("tada2d_r50_8f")``
works like any timm model.
"""
from .layers import (
    LearnableCalibration, RouteFuncMLP, RouteFuncTransformer, TAdaConv2d, TAdaConv3d, TemporalAggregation)
from . import models
from .models import WeightsNotAvailableError, list_models, list_published
from .tadafy import tadafy
from .weights import hub  # noqa: E402  (above the model layer: config.json, model cards, the Hub)

__version__ = "0.1.0"


def __getattr__(name):
    """``tada_zoo.FeatureExtractor`` / ``VideoClassifier`` without importing the video stack at
    ``import tada_zoo`` (registering the models stays light)."""
    if name in ("FeatureExtractor", "VideoClassifier", "load_classifier", "extract_videos"):
        from . import inference
        return getattr(inference, name)
    raise AttributeError(f"module 'tada_zoo' has no attribute {name!r}")
