"""Training and evaluation: the loop, recipes, checkpoints, multi-view metrics, DDP helpers."""
from tada_zoo.models import create_video_model

from .metrics import collect_scores, compute_metrics, ensemble_scores, parse_num_classes
from .recipes import RECIPES
from .trainer import TrainConfig, fit

__all__ = ["create_video_model", "collect_scores", "compute_metrics", "ensemble_scores",
           "parse_num_classes", "RECIPES", "TrainConfig", "fit"]
