"""Building blocks with no model knowledge: TAdaConv, calibration generators, temporal aggregation, MLPs."""
from ._derived import clear_derived, derived
from ._fx import fx_check, fx_leaf
from .calibration import (
    FrameConv1d, LearnableCalibration, RouteFuncMLP, RouteFuncTransformer, route_func_transformer_from_original,
    spatial_mean)
from .mlp import QuickGELUMlp
from .tadaconv import TAdaConv2d, TAdaConv3d, check_video, depthwise_conv3d, temporal_taps
from .temporal import TemporalAggregation, temporal_pool, temporal_sum, unflatten_frames
