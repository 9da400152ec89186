"""tada-zoo: temporally-adaptive video networks as timm models.

``import tada_zoo`` registers every model, after which ``timm.create_model("tada2d_r50_8f")``
works like any timm model.
"""
from .layers import (
    LearnableCalibration, RouteFuncMLP, RouteFuncTransformer, TAdaConv2d, TAdaConv3d, TemporalAggregation)
from . import models
from .models import list_models
from .tadafy import tadafy

__version__ = "0.1.0"
