"""Weights: original checkpoints converted (``convert``), 2D ImageNet weights inflated
(``inflate``), originals fetched (``download``), Hub repos written and pushed with their
config.json and model cards (``hub``). Above the model layer; the command line calls in."""
