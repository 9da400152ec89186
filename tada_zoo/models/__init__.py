"""Model families; importing this registers every model with timm."""
import timm

from .tada2d import *
from .tadaconvnext import *
from .tadaformer import *
from .resnet3d import *
from .slowfast import *


def list_models(pattern: str = "*") -> list:
    """Names of the models tada-zoo registers in timm (``pattern`` as in ``timm.list_models``)."""
    return [name for name in timm.list_models(pattern)
            if timm.models.model_entrypoint(name).__module__.startswith(__name__)]
