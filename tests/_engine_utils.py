"""Helpers shared by the engine / features tests: tiny models and in-memory moving-shape clips."""
import numpy as np
import pytest
import timm
import torch

import tada_zoo  # noqa: F401

TINY = dict(layers=(1, 1, 1, 1), widths=(8, 16, 32, 64), stem_width=8)


def tiny_model(name: str = "tada2d_r50_8f", num_classes: int = 2, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model(name, num_classes=num_classes, **TINY, **kwargs)


class ClipDataset(torch.utils.data.Dataset):
    """Normalised moving-shape clips ``(3, T, size, size)`` in memory, items like VideoDataset's."""

    def __init__(self, n: int, num_frames: int = 4, size: int = 32, num_classes: int = 2, seed: int = 0, heads=None):
        from tada_zoo.data.synthetic import moving_shape_clip

        rng = np.random.default_rng(seed)
        self.labels = [i % num_classes for i in range(n)]
        self.clips = [(torch.from_numpy(moving_shape_clip(l, num_frames, size, rng)).permute(3, 0, 1, 2).float() / 255
                       - 0.45) / 0.225 for l in self.labels]
        self.heads = heads

    def __len__(self):
        return len(self.clips)

    def __getitem__(self, i):
        label = self.labels[i]
        if self.heads:  # two heads: direction, and axis (horizontal / vertical)
            label = torch.tensor([label, label // 2])
        return dict(video=self.clips[i], label=label, index=i, clip_index=0)


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: these tiny models gain nothing from more, and on a shared CPU
    spinning threads make them many times slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# seconds after which a subprocess of a test counts as hung: a guard, not a speed limit, so generous enough
# that a correct run on a machine at load 8 never reaches it
HANG_GUARD = 1800


def train_shapes_run(tmp_path_factory, classes):
    """A run of ``tada-zoo train`` (tag k400's recipe and protocol, random init, tiny network) on class
    folders ``my-shapes/<class>/clip<i>.mp4`` of 3 moving-shape videos each (label i moves as
    ``moving_shape_clip(i)``): ``(run folder, class-folder root)``."""
    import json

    from tada_zoo.cli import main
    from tada_zoo.data.synthetic import moving_shape_clip, write_video

    root = tmp_path_factory.mktemp("shapes") / "my-shapes"
    rng = np.random.default_rng(0)
    for label, name in enumerate(classes):
        for i in range(3):
            write_video(root / name / f"clip{i}.mp4", moving_shape_clip(label, 8, 32, rng))
    out = tmp_path_factory.mktemp("run")
    assert main(["train", "--model", "tada2d_r50_8f.k400", "--data-root", str(root), "--output", str(out),
                 "--val-fraction", "0.34", "--epochs", "1", "--batch-size", "2", "--input-size", "32",
                 "--model-kwargs", json.dumps(TINY), "--num-frames", "4", "--workers", "0", "--quiet"]) == 0
    return out, root


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for servers and rendezvous the tests start)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
