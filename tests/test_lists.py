"""Annotation lists: any file name a file system allows round-trips, and repeats or contradictions are
named (issue 22: a class folder named '#right' was silently a comment; repeats were scored twice)."""
import os

import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

from tada_zoo.data import VideoDataset, read_annotations, write_annotations
from tada_zoo.data.adapters import class_folders_to_lists

ODD_NAMES = ["#right/v1.mp4", "a\nb.mp4", "a\rb.mp4", " lead.mp4", "trail.mp4 ", 'q"uote.mp4', '"start.mp4',
             "take 3", "take -3", "tab\there.mp4", "caf\udce9.mp4", "plain name.mp4", "ünï/çødé.mp4", "x\x00y"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(min_size=1).filter(lambda s: s.strip("\x00") == s), min_size=1, max_size=5, unique=True),
       st.integers(0, 999))
@example(ODD_NAMES, 7)
def test_any_path_round_trips(tmp_path_factory, paths, label):
    f = tmp_path_factory.mktemp("lists") / "list.txt"
    samples = [(p, label + i) for i, p in enumerate(paths)]
    write_annotations(samples, f)
    assert read_annotations(f) == samples


def test_plain_paths_are_written_as_before(tmp_path):
    """The original's format for every ordinary path: no quotes."""
    f = tmp_path / "l.txt"
    write_annotations([("air drumming/x 1.mp4", 1), ("a/b.mp4", (3, 4))], f)
    assert f.read_text() == "air drumming/x 1.mp4 1\na/b.mp4 3 4\n"


def _videos(root, names):
    from tada_zoo.data.synthetic import moving_shape_clip, write_video

    rng = np.random.default_rng(0)
    for i, name in enumerate(names):
        write_video(root / name, moving_shape_clip(i % 2, 4, 16, rng))


def test_class_folder_named_like_a_comment_is_trained_on(tmp_path):
    """'#right' and a file name with a line break: every video of every class is in the lists."""
    names = ["#right/v1.mp4", "#right/v2.mp4", "left/v1.mp4", "left/line\nbreak.mp4"]
    _videos(tmp_path / "videos", names)
    classes = class_folders_to_lists(tmp_path / "videos", tmp_path / "lists", val_fraction=0.5)
    assert classes == ["#right", "left"]
    back = read_annotations(tmp_path / "lists" / "train.txt") + read_annotations(tmp_path / "lists" / "val.txt")
    assert sorted(back) == sorted((n, int(n.startswith("left"))) for n in names)
    ds = VideoDataset(tmp_path / "videos", tmp_path / "lists" / "train.txt", 2, frame_interval=1)
    assert len(ds) == 2 and ds[0]["video"].shape[0] == 2


def test_a_video_listed_twice(tmp_path):
    _videos(tmp_path, ["a.mp4", "b.mp4"])
    (tmp_path / "same.txt").write_text("a.mp4 0\nb.mp4 1\n# note\na.mp4 0\n")
    (tmp_path / "other.txt").write_text("a.mp4 0\nb.mp4 1\na.mp4 1\n")
    with pytest.raises(ValueError, match=r"same.txt:4: a.mp4 is listed again \(first on line 1\)"):
        VideoDataset(tmp_path, tmp_path / "same.txt", 2, train=True)
    with pytest.warns(RuntimeWarning, match=r"same.txt:4: a.mp4 is listed again \(first on line 1\); scored once"):
        ds = VideoDataset(tmp_path, tmp_path / "same.txt", 2, train=False)
    assert [p for p, _ in ds.samples] == ["a.mp4", "b.mp4"] and ds.line_numbers == [1, 2]
    for train in (True, False):
        with pytest.raises(ValueError, match=r"other.txt:3: a.mp4 has label 1 here and 0 on line 1"):
            VideoDataset(tmp_path, tmp_path / "other.txt", 2, train=train)


@pytest.mark.parametrize("line", ['"unclosed.mp4 0', '"a.mp4"x 0', '"a.mp4"', '"a.mp4" zero', "no-label.mp4"])
def test_bad_quoted_lines_name_the_line(tmp_path, line):
    f = tmp_path / "l.txt"
    f.write_text(f"ok.mp4 0\n{line}\n")
    with pytest.raises(ValueError, match=r"l.txt:2: expected 'relative/path label"):
        read_annotations(f)
