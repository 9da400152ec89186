"""Inference: classify clips with names and scores (``predict``), extract backbone features
from videos (``features``), and picture what a model attends to and its calibration
(``visualize``)."""
from .features import FeatureExtractor, extract_videos
from .predict import VideoClassifier, load_classifier

__all__ = ["FeatureExtractor", "extract_videos", "VideoClassifier", "load_classifier"]
