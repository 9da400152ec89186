"""Training and evaluation: the loop, recipes, checkpoints, multi-view metrics, DDP helpers."""
from .checkpoint import create_video_model, load_state_dict_file
from .metrics import collect_scores, compute_metrics, ensemble_scores, parse_num_classes
from .recipes import RECIPES
from .trainer import TrainConfig, fit

__all__ = ["create_video_model", "load_state_dict_file", "collect_scores", "compute_metrics", "ensemble_scores",
           "parse_num_classes", "RECIPES", "TrainConfig", "fit"]
