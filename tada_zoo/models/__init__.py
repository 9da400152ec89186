"""Model families, one file each; importing this registers every model with timm. The names below are
the model layer's API for the rest of the package (and for users): name and tag queries (``_registry``),
the factory (``_factory``), checkpoint reading and loading (``_helpers``), the weights folder (``_weights``)."""
from ._cfg import VideoPretrainedCfg
from ._factory import create_video_model
from ._helpers import load_checkpoint, read_checkpoint
from ._registry import (family, hub_models, list_models, list_published, registered_cfg, registered_tags,
                        released_models, repo_id)
from ._weights import WEIGHTS_NAME, WeightsNotAvailableError, how_to_get
from .tada2d import *
from .tadaconvnext import *
from .tadaformer import *
from .resnet3d import *
from .slowfast import *
