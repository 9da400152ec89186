"""Building blocks with no model knowledge: TAdaConv, calibration generators, temporal aggregation."""
from .calibration import LearnableCalibration, RouteFuncMLP, RouteFuncTransformer, route_func_transformer_from_original
from .tadaconv import TAdaConv2d, check_video
from .temporal import TemporalAggregation, temporal_pool, temporal_sum
