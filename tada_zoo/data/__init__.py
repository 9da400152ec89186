"""Video data: frame-exact decoding, clip sampling, clip transforms, datasets and list adapters."""
from .decode import (BaseVideoReader, PyAVReader, VideoDecodeError, VideoReader, open_video, read_windows,
                     register_backend)
from .sampling import interval_indices, segment_indices, sliding_windows
from .transforms import (DEFAULT_MEAN, DEFAULT_STD, EvalTransform, TrainTransform, VideoMixup,
                         transforms_from_cfg)
from .datasets import VideoDataset, read_annotations, sampling_from_cfg, write_annotations
from .adapters import (epic100_csv_to_list, hmdb51_to_list, kinetics_csv_to_list, ssv2_json_to_list,
                       ucf101_to_list)
