"""tada-zoo: temporally-adaptive video networks as timm models.

``import tada_zoo`` registers every model, after which ``timm.create_model("tada2d_r50_8f")``
works like any timm model.
"""
from .layers import (
    LearnableCalibration, RouteFuncMLP, RouteFuncTransformer, TAdaConv2d, TAdaConv3d, TemporalAggregation)
from . import models
from .models import list_models, list_published
from .models._builder import WeightsNotAvailableError
from .tadafy import tadafy
from . import hub  # noqa: E402  (above the model layer: config.json, model cards, the Hub)

__version__ = "0.1.0"
