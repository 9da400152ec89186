"""Model families; importing this registers every model with timm."""
from .tada2d import *
from .tadaformer import *
