"""Model families; importing this registers every model with timm."""
from .tada2d import *
from .resnet3d import *
from .slowfast import *
