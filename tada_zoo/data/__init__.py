"""Video data: frame-exact decoding, clip sampling, clip transforms, datasets, the cfg -> pipeline
protocol, the one folder walker and list adapters."""
from .decode import (BaseVideoReader, PyAVReader, VideoDecodeError, VideoReader, check_backend, default_backend,
                     open_video, read_windows, register_backend, set_default_backend)
from .decode_torchcodec import TorchCodecReader  # torchcodec itself is imported when a reader opens

register_backend("torchcodec", TorchCodecReader)
from .sampling import interval_indices, segment_indices, sliding_windows
from .transforms import DEFAULT_MEAN, DEFAULT_STD, EvalTransform, TrainTransform, VideoMixup
from .datasets import VideoDataset, read_annotations, write_annotations
from .protocol import (SSV2_FLIP_LABELS, DataProtocol, create_transform, default_frame_interval, protocol_from_cfg,
                       resolve_data_config)
from .folders import VIDEO_EXTENSIONS, find_videos, summarize_skipped
from .adapters import (class_folders_to_lists, epic100_csv_to_list, hmdb51_to_list, kinetics_csv_to_list,
                       scan_class_folders, split_class_folders, ssv2_json_to_list, ucf101_to_list)
