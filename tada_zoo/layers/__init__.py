"""Building blocks with no model knowledge: TAdaConv, calibration generators, temporal aggregation."""
from .calibration import LearnableCalibration, RouteFuncMLP
from .tadaconv import TAdaConv2d, check_video
from .temporal import TemporalAggregation, temporal_pool
