"""Model families, one file each; importing this registers every model with timm."""
from ._builder import list_models, list_published
from .tada2d import *
from .tadaconvnext import *
from .tadaformer import *
from .resnet3d import *
from .slowfast import *
