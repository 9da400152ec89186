"""Annotation lists and VideoDataset: exact clips end to end, missing and corrupt files, multi-label."""
import os
import random
import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from _engine_utils import one_thread, tiny_model  # noqa: F401  (one_thread: autouse fixture)
from data_videos import read_index, write_video
from tada_zoo.data import (SSV2_FLIP_LABELS, EvalTransform, TrainTransform, VideoDataset, VideoDecodeError,
                           interval_indices, protocol_from_cfg, read_annotations, segment_indices)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    d = tmp_path_factory.mktemp("ds")
    (d / "a b").mkdir()
    write_video(d / "a b" / "v0.mp4", 40)
    write_video(d / "v1.mp4", 30)
    (d / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom" + b"\x00" * 200)
    # other names for the same files: a list names each video once (read_annotations refuses repeats)
    for i in range(10):
        os.symlink("v1.mp4", d / f"v1_{i}.mp4")
    os.symlink("corrupt.mp4", d / "corrupt_2.mp4")
    os.symlink("v0.mp4", d / "a b" / "v0_2.mp4")
    return d


def _list(tmp_path, text):
    p = tmp_path / "list.txt"
    p.write_text(text)
    return p


def test_read_annotations(tmp_path):
    assert read_annotations(_list(tmp_path, "a b/v0.mp4 3\n\nv1.mp4 0\n")) == [("a b/v0.mp4", 3), ("v1.mp4", 0)]
    assert read_annotations(_list(tmp_path, "x.mp4 3 7\ny.mp4\t1  2\n")) == [("x.mp4", (3, 7)), ("y.mp4", (1, 2))]
    with pytest.raises(ValueError, match=r"list.txt:2: .*'y.mp4 dog'"):
        read_annotations(_list(tmp_path, "x.mp4 3\ny.mp4 dog\n"))
    with pytest.raises(ValueError, match=r":2: 1 labels, but earlier lines have 2"):
        read_annotations(_list(tmp_path, "x.mp4 3 7\ny.mp4 1\n"))


def test_missing_files_reported_up_front(root, tmp_path):
    lst = _list(tmp_path, "v1.mp4 0\nnope1.mp4 1\nsub/nope2.mp4 2\n")
    with pytest.raises(FileNotFoundError, match=r"(?s)2 of 3 videos.*nope1.mp4.*sub/nope2.mp4"):
        VideoDataset(root, lst, 4)
    assert len(VideoDataset(root, lst, 4, check_files=False)) == 3


def test_eval_clips_are_the_sampled_frames(root, tmp_path):
    lst = _list(tmp_path, "a b/v0.mp4 3\nv1.mp4 1\n")
    ds = VideoDataset(root, lst, 4, frame_interval=3, train=False, num_clips=3)
    assert len(ds) == 6
    item = ds[4]  # sample 1 (30 frames), clip 1 of 3
    assert (item["index"], item["clip_index"], item["label"]) == (1, 1, 1)
    frames = item["video"].numpy()
    assert frames.shape == (4, 48, 64, 3) and frames.dtype == np.uint8
    expected = interval_indices(30, 4, 3, clip_index=1, num_clips=3).tolist()
    assert [read_index(f) for f in frames] == expected
    seg = VideoDataset(root, lst, 8, sampling="segment", train=False)
    assert [read_index(f) for f in seg[0]["video"].numpy()] == segment_indices(40, 8, random=False).tolist()


def test_train_items_with_transform_and_loader(root, tmp_path):
    lst = _list(tmp_path, "a b/v0.mp4 3\nv1.mp4 1\n")
    ds = VideoDataset(root, lst, 4, sampling="segment", transform=TrainTransform(32, (40, 48), hflip=False))
    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert batch["video"].shape == (2, 3, 4, 32, 32)
    assert batch["skipped"].tolist() == [0, 0]
    assert batch["label"].tolist() == [3, 1]
    ev = VideoDataset(root, lst, 4, train=False, transform=EvalTransform(32, 40, num_crops=3))
    assert ev[0]["video"].shape == (3, 3, 4, 32, 32)


def test_corrupt_video_in_training_is_skipped_and_counted(root, tmp_path):
    lst = _list(tmp_path, "corrupt.mp4 5\nv1.mp4 1\n")
    ds = VideoDataset(root, lst, 4)
    with pytest.warns(RuntimeWarning, match="corrupt.mp4"):
        for _ in range(3):
            item = ds[0]
            assert item["label"] == 1 and item["index"] == 1  # another sample took its place
            assert item["skipped"] >= 1
    assert ds.num_corrupt >= 3 and "corrupt.mp4" in ds.corrupt_files


def test_corrupt_video_in_eval_raises(root, tmp_path):
    ds = VideoDataset(root, _list(tmp_path, "v1.mp4 1\ncorrupt.mp4 5\n"), 4, train=False)
    ds[0]
    with pytest.raises(VideoDecodeError, match="corrupt.mp4"):
        ds[1]


def test_all_corrupt_gives_up(root, tmp_path):
    ds = VideoDataset(root, _list(tmp_path, "corrupt.mp4 5\n"), 4, max_retries=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(VideoDecodeError, match="3 videos in a row"):
            ds[0]
    assert ds.num_corrupt == 3


def test_multi_label_end_to_end(root, tmp_path):
    ds = VideoDataset(root, _list(tmp_path, "a b/v0.mp4 3 7\nv1.mp4 1 2\n"), 4,
                      transform=TrainTransform(32, (40, 48)))
    assert ds.num_labels == 2
    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert batch["label"].dtype == torch.long and batch["label"].tolist() == [[3, 7], [1, 2]]


def test_protocol_builds_the_tag_dataset(root, tmp_path):
    import tada_zoo  # noqa: F401
    from timm.models import get_pretrained_cfg

    lst = _list(tmp_path, "a b/v0.mp4 3\nv1.mp4 1\n")
    protocol = protocol_from_cfg(get_pretrained_cfg("tada2d_r50_8f.ssv2"), test_crop=32, train_crop=32)
    ev = protocol.dataset(root, lst, train=False)
    assert (ev.sampling, ev.num_frames, ev.num_clips, ev.transform.num_crops, len(ev)) == ("segment", 8, 2, 3, 4)
    assert ev[1]["video"].shape == (3, 3, 8, 32, 32)
    tr = protocol.dataset(root, lst, train=True)
    assert tr.target_fps == 30 and tr.flip_labels is None and tr.transform.hflip
    assert protocol_from_cfg(None, flip_labels="ssv2").dataset(root, lst, train=True).flip_labels == SSV2_FLIP_LABELS
    assert protocol_from_cfg(None, flip_labels="ssv2", hflip=False).dataset(root, lst, train=True).flip_labels is None


def _as_clip(frames):
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).float()


def test_ssv2_flip_swaps_direction_labels_with_the_mirror(tmp_path):
    """The original's SSV2_FLIP: a mirrored clip of "left to right" (86) is labelled "right to left" (87)."""
    frame = np.zeros((48, 64, 3), np.uint8)
    frame[:, 32:] = 220  # dark left, bright right: a mirrored clip is bright on the left
    write_video(tmp_path / "v.mp4", 8, frames=[frame] * 8)
    os.symlink("v.mp4", tmp_path / "v2.mp4")
    os.symlink("v.mp4", tmp_path / "v3.mp4")
    ds = VideoDataset(tmp_path, _list(tmp_path, "v.mp4 86\nv2.mp4 5\nv3.mp4 167\n"), 4, frame_interval=1,
                      transform=_as_clip, flip_labels=SSV2_FLIP_LABELS)
    random.seed(0)
    seen = set()
    for _ in range(30):
        for i, (label, swapped) in enumerate(((86, 87), (5, 5), (167, 166))):
            item = ds[i]
            mirrored = bool(item["video"][..., :8].mean() > item["video"][..., -8:].mean())
            assert item["label"] == (swapped if mirrored else label)
            seen.add((i, mirrored))
    assert len(seen) == 6  # every label seen mirrored and not


def test_training_clips_use_the_30_fps_window(tmp_path):
    """A 60-fps file: 4 frames at interval 4 (30-fps frames) span 32 of its frames, as in the original."""
    write_video(tmp_path / "v60.mp4", 64, fps=60)
    lst = _list(tmp_path, "v60.mp4 0\n")
    random.seed(0)
    for target_fps, span in ((30, (30, 31)), (None, (14, 15))):
        ds = VideoDataset(tmp_path, lst, 4, frame_interval=4, target_fps=target_fps)
        for _ in range(5):
            idx = [read_index(f) for f in ds[0]["video"].numpy()]
            assert span[0] <= idx[-1] - idx[0] <= span[1], (target_fps, idx)


def test_custom_backend_through_open_video(tmp_path):
    """The reader interface is small enough to plug another decoder in."""
    from tada_zoo.data import BaseVideoReader, register_backend

    class ArrayReader(BaseVideoReader):
        def __init__(self, path):
            self.path = str(path)

        def __len__(self):
            return 20

        @property
        def fps(self):
            return 25.0

        def frames_at(self, indices):
            idx = self._check_indices(indices)
            return np.stack([np.full((8, 8, 3), i, np.uint8) for i in idx])

    register_backend("array", ArrayReader)
    ds = VideoDataset(tmp_path, _list(tmp_path, "anything.bin 2\n"), 4, frame_interval=2, train=False,
                      check_files=False, backend="array")
    expected = interval_indices(20, 4, 2, clip_index=0, video_fps=25.0, target_fps=30)  # the reader's fps is used
    assert ds[0]["video"][:, 0, 0, 0].tolist() == expected.tolist()


def test_worker_processes_count_skipped_videos(root, tmp_path):
    """num_corrupt lives in each worker; the items' ``skipped`` field reaches the main process."""
    lst = _list(tmp_path, "corrupt.mp4 5\nv1.mp4 1\ncorrupt_2.mp4 5\nv1_1.mp4 1\n")
    ds = VideoDataset(root, lst, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # forkserver: workers forked from pytest(-xdist)'s threaded process after in-process decoding
        # could hang or segfault in torch's fd sharing (seen with -n 2); a clean server process cannot
        batches = list(DataLoader(ds, batch_size=2, num_workers=2, multiprocessing_context="forkserver"))
    assert sum(int(b["skipped"].sum()) for b in batches) >= 2
    assert all(b["label"].tolist() == [1, 1] for b in batches)
    assert ds.num_corrupt == 0  # the main process decoded nothing


def test_labels_checked_against_num_classes(root, tmp_path):
    """Every label is checked at construction, with the list's line numbers (comments and blanks count)."""
    lst = _list(tmp_path, "# header\nv1.mp4 0\n\nv1_1.mp4 5\nv1_2.mp4 -1\nv1_3.mp4 4\n")
    with pytest.raises(ValueError, match=r"(?s)2 of 4 lines.*0\.\.4.*list.txt:4: label 5.*list.txt:5: label -1"):
        VideoDataset(root, lst, 4, num_classes=5)
    with pytest.raises(ValueError, match=r"(?s)1 of 4 lines.*0\.\.5.*list.txt:5: label -1"):  # 5 is fine now, -1 not
        VideoDataset(root, lst, 4, num_classes=6)
    assert len(VideoDataset(root, lst, 4)) == 4  # num_classes=None: no check
    assert len(VideoDataset(root, _list(tmp_path, "v1.mp4 0\nv1_1.mp4 4\n"), 4, num_classes=5)) == 2
    many = _list(tmp_path, "".join(f"v1_{i}.mp4 {9 + i}\n" for i in range(8)))
    with pytest.raises(ValueError, match=r"8 of 8 lines") as e:
        VideoDataset(root, many, 4, num_classes=9)
    assert "list.txt:5:" in str(e.value) and "list.txt:6:" not in str(e.value) and "3 more" in str(e.value)


def test_multi_head_labels_checked_per_head(root, tmp_path):
    lst = _list(tmp_path, "v1.mp4 3 2\nv1_1.mp4 1 3\n")
    with pytest.raises(ValueError, match=r"list.txt:2: label 3 of head 2 \(allowed 0\.\.2\)"):
        VideoDataset(root, lst, 4, num_classes=(4, 3))
    assert VideoDataset(root, lst, 4, num_classes=(4, 4)).num_labels == 2
    with pytest.raises(ValueError, match=r"list.txt:1: 2 labels per line, but num_classes=5 has 1 head"):
        VideoDataset(root, lst, 4, num_classes=5)
    with pytest.raises(ValueError, match=r"list.txt:1: 1 label per line, but num_classes=\(4, 3\) has 2 heads"):
        VideoDataset(root, _list(tmp_path, "v1.mp4 3\n"), 4, num_classes=(4, 3))
    with pytest.raises(ValueError, match="num_classes"):
        VideoDataset(root, lst, 4, num_classes=(4, 0))


def test_read_annotations_line_numbers(tmp_path):
    lst = _list(tmp_path, "# c\nx.mp4 3\n\ny.mp4 1\n")
    assert read_annotations(lst) == [("x.mp4", 3), ("y.mp4", 1)]
    assert read_annotations(lst, return_lines=True) == ([("x.mp4", 3), ("y.mp4", 1)], [2, 4])
    ds = VideoDataset(tmp_path, lst, 4, check_files=False)
    assert ds.line_numbers == [2, 4] and ds.list_file == str(lst)


def test_probe_collects_unreadable_videos(root, tmp_path):
    lst = _list(tmp_path, "v1.mp4 0\ncorrupt.mp4 1\na b/v0.mp4 2\ncorrupt_2.mp4 1\ngone.mp4 3\n")
    ds = VideoDataset(root, lst, 4, check_files=False)
    for workers in (0, 2):
        bad = ds.probe(workers=workers)
        assert sorted(bad) == ["corrupt.mp4", "corrupt_2.mp4", "gone.mp4"], workers
        assert isinstance(bad["corrupt.mp4"], str) and bad["corrupt.mp4"]  # the decoder's reason
        assert "missing" in bad["gone.mp4"]
    assert VideoDataset(root, _list(tmp_path, "v1.mp4 0\na b/v0.mp4 2\n"), 4).probe(workers=2) == {}


def test_list_with_utf8_bom(root, tmp_path):
    lst = tmp_path / "list.txt"
    lst.write_bytes(b"\xef\xbb\xbfv1.mp4 0\na b/v0.mp4 1\n")
    assert read_annotations(lst) == [("v1.mp4", 0), ("a b/v0.mp4", 1)]
    assert len(VideoDataset(root, lst, 4)) == 2


def test_list_in_utf16_is_read(tmp_path):
    """Windows tools (PowerShell 5's ``>``) write UTF-16 with a BOM."""
    lst = tmp_path / "list.txt"
    for codec in ("utf-16", "utf-16-be", "utf-32"):
        bom = {"utf-16-be": b"\xfe\xff"}.get(codec, b"")
        lst.write_bytes(bom + "v1.mp4 0\r\nä/v0.mp4 1\r\n".encode(codec))
        assert read_annotations(lst) == [("v1.mp4", 0), ("ä/v0.mp4", 1)], codec


def test_list_that_is_a_directory_or_not_utf8(tmp_path):
    (tmp_path / "lists").mkdir()
    with pytest.raises(ValueError, match=r"lists is a directory"):
        read_annotations(tmp_path / "lists")
    lst = tmp_path / "list.txt"
    lst.write_bytes(b"v1.mp4 0\n# caf\xe9\nv\xff.mp4 1\n")
    with pytest.raises(ValueError, match=r"list.txt:2: .*UTF-8"):
        read_annotations(lst)


def test_unusable_paths_reported_as_what_they_are(tmp_path):
    import os

    write_video(tmp_path / "ok.mp4", 8)
    (tmp_path / "dir.mp4").mkdir()
    os.symlink("loop.mp4", tmp_path / "loop.mp4")
    os.symlink("nowhere.mp4", tmp_path / "dangling.mp4")
    lst = _list(tmp_path, "ok.mp4 0\ndir.mp4 1\nloop.mp4 2\ndangling.mp4 3\ngone.mp4 4\n")
    with pytest.raises(FileNotFoundError) as e:
        VideoDataset(tmp_path, lst, 4)
    msg = str(e.value)
    assert "4 of 5 videos" in msg
    assert "list.txt:2: dir.mp4 (is a directory)" in msg
    assert "list.txt:3: loop.mp4 (is a broken or looping symlink)" in msg
    assert "list.txt:4: dangling.mp4 (is a broken or looping symlink)" in msg
    assert "list.txt:5: gone.mp4 (missing)" in msg
    assert "--data-root" in msg and "--drop-missing" in msg and "check_files=False" in msg


@pytest.mark.parametrize("sampling, transform", [("interval", None), ("segment", None),
                                                 ("interval", EvalTransform(32, 40, num_crops=3))])
def test_per_video_views_are_the_per_clip_items_decoded_once(root, tmp_path, sampling, transform):
    """``load_views`` decodes a video once for all its clips and gives exactly the per-clip items."""
    from tada_zoo.data import PyAVReader, register_backend

    calls = []

    class Counting(PyAVReader):
        def frames_at(self, indices):
            calls.append(self.path)
            return super().frames_at(indices)

    register_backend("counting", Counting)
    lst = _list(tmp_path, "a b/v0.mp4 3\nv1.mp4 1\n")
    ds = VideoDataset(root, lst, 4, sampling, frame_interval=3, train=False, num_clips=3, transform=transform,
                      backend="counting")
    views = ds.per_video()
    assert len(views) == 2
    for i, n in enumerate((40, 30)):
        calls.clear()
        item = views[i]
        assert len(calls) == 1 and (item["index"], item["label"]) == (i, (3, 1)[i])
        assert item["video"].shape[0] == 3
        for c in range(3):
            assert torch.equal(item["video"][c], ds[i * 3 + c]["video"]), (i, c)
            if transform is None:
                assert [read_index(f) for f in item["video"][c].numpy()] == ds.indices(n, c, 30.0).tolist()
    with pytest.raises(ValueError, match="train=True"):
        VideoDataset(root, lst, 4).per_video()


@pytest.mark.parametrize("batch_size", [1, 2, 4, 7])
def test_clip_batches_are_the_per_clip_loaders_batches(root, tmp_path, batch_size):
    """Per-video items re-cut into clip batches: the same batches as a DataLoader over the clip items."""
    from tada_zoo.data.datasets import ClipBatches

    lst = _list(tmp_path, "a b/v0.mp4 3 7\nv1.mp4 1 2\na b/v0_2.mp4 0 5\n")  # multi-label: (B, heads) labels
    ds = VideoDataset(root, lst, 4, frame_interval=3, train=False, num_clips=3)
    ours = ClipBatches(DataLoader(ds.per_video(), batch_size=2), batch_size)
    theirs = list(DataLoader(ds, batch_size=batch_size))
    got = list(ours)
    assert len(ours) == len(got) == len(theirs)
    for a, b in zip(got, theirs):
        for key in ("video", "label", "index", "clip_index"):
            assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


def test_evaluation_scores_unchanged_by_per_video_decoding(root, tmp_path, monkeypatch):
    """evaluate_model reads videos once each; its scores are bit for bit those of the per-clip loader."""
    from tada_zoo.engine.evaluate import evaluate_model
    from tada_zoo.engine.metrics import collect_scores

    model = tiny_model(num_classes=3, num_frames=4).eval()
    lst = _list(tmp_path, "a b/v0.mp4 2\nv1.mp4 1\na b/v0_2.mp4 0\n")
    ds = VideoDataset(root, lst, 4, frame_interval=3, train=False, num_clips=3,
                      transform=EvalTransform(32, 40, num_crops=3))
    for batch_size in (2, 3):
        old = collect_scores(model, DataLoader(ds, batch_size=batch_size), 3, [3], torch.device("cpu"))
        with monkeypatch.context() as m:
            m.setattr(VideoDataset, "__getitem__", None)  # no per-clip item may be read
            new = evaluate_model(model, ds, [3], batch_size=batch_size, workers=0, progress=False)
        assert torch.equal(new["scores"][0], old["scores"][0]) and torch.equal(new["views"], old["views"])
        assert new["views"].tolist() == [9.0] * 3 and new["labels"][:, 0].tolist() == [2, 1, 0]
