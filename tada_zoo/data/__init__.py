"""Video data: frame-exact decoding, clip sampling, clip transforms, datasets, the cfg -> pipeline
protocol and list adapters."""
from .decode import (BaseVideoReader, PyAVReader, VideoDecodeError, VideoReader, open_video, read_windows,
                     register_backend)
from .sampling import interval_indices, segment_indices, sliding_windows
from .transforms import DEFAULT_MEAN, DEFAULT_STD, EvalTransform, TrainTransform, VideoMixup
from .datasets import VideoDataset, read_annotations, write_annotations
from .protocol import SSV2_FLIP_LABELS, DataProtocol, default_frame_interval, protocol_from_cfg
from .adapters import (VIDEO_EXTENSIONS, class_folders_to_lists, epic100_csv_to_list, hmdb51_to_list,
                       kinetics_csv_to_list, scan_class_folders, split_class_folders, ssv2_json_to_list,
                       ucf101_to_list)
