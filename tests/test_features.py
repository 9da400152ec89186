"""Feature extraction: shapes, window timestamps, equality with the model's own forward,
files + index, resume, corrupt videos."""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tada_zoo.features import FeatureExtractor, extract_videos, list_videos

from _engine_utils import tiny_model, one_thread  # noqa: F401


def test_from_tensor_windows_and_layers():
    model = tiny_model()
    video = torch.randn(3, 10, 32, 32)
    ex = FeatureExtractor(model, "pooled", batch_size=2)
    out = ex.from_tensor(video, clip_len=4, frame_interval=2, clip_stride=3, fps=5.0)
    # windows start at 0, 3, 6, 9; frames start + 2k clamped to the last frame
    assert out["start_frames"].tolist() == [0, 3, 6, 9]
    assert out["features"].shape == (4, model.num_features)
    np.testing.assert_allclose(out["timestamps"].numpy(), [[0, 7 / 5], [3 / 5, 10 / 5], [6 / 5, 10 / 5], [9 / 5, 10 / 5]])
    with torch.no_grad():
        model.eval()
        clip = video[:, [3, 5, 7, 9]][None]  # window 1
        ref = model.forward_features(clip).mean((2, 3, 4))
    torch.testing.assert_close(out["features"][1:2], ref, rtol=1e-4, atol=1e-5)
    fmap = FeatureExtractor(model, "map").from_tensor(video, 4, 2, 3)["features"]
    assert fmap.shape == (4, model.num_features, 4, 1, 1)
    stage2 = FeatureExtractor(model, 2)(video[:, :4][None])
    assert stage2.shape == (1, model.feature_info[2]["num_chs"], 4, 4, 4)  # 32 / reduction 8
    with pytest.raises(ValueError, match="out of range"):
        FeatureExtractor(model, 7)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    from tada_zoo.data.synthetic import moving_shape_clip, write_video

    root = tmp_path_factory.mktemp("vids")
    rng = np.random.default_rng(0)
    for i, n in enumerate((12, 5, 9)):  # frames per video
        write_video(root / "sub" / f"v{i}.mp4", moving_shape_clip(i % 4, n, 32, rng), fps=4)
    (root / "sub" / "broken.mp4").write_bytes(b"not a video")
    return root


def test_extract_files_index_resume_and_corrupt(videos, tmp_path):
    from tada_zoo.data import EvalTransform

    ex = FeatureExtractor(tiny_model(), "pooled", batch_size=3)
    tf = EvalTransform(crop_size=32, short_side=32, num_crops=1)
    paths = list_videos(videos)
    assert [p.name for p in paths] == ["broken.mp4", "v0.mp4", "v1.mp4", "v2.mp4"]
    r = extract_videos(ex, paths, tmp_path, clip_len=4, frame_interval=1, clip_stride=4, transform=tf,
                       workers=2, root=videos, progress=False)
    assert r["done"] == 3 and list(r["failed"]) == ["sub/broken.mp4"]
    index = {e["video"]: e for e in map(json.loads, (tmp_path / "index.jsonl").read_text().splitlines())}
    assert index["sub/broken.mp4"]["status"] == "corrupt"
    for i, n in enumerate((12, 5, 9)):
        f = load_file(tmp_path / "sub" / f"v{i}.safetensors")
        starts = list(range(0, n, 4))
        assert f["start_frames"].tolist() == starts
        assert f["features"].shape == (len(starts), 64 * 4)
        np.testing.assert_allclose(f["timestamps"][:, 0].numpy(), np.array(starts) / 4)
        np.testing.assert_allclose(f["timestamps"][:, 1].numpy(), np.minimum(np.array(starts) + 4, n) / 4)
        assert index[f"sub/v{i}.mp4"]["num_clips"] == len(starts)
        assert (index[f"sub/v{i}.mp4"]["fps"], index[f"sub/v{i}.mp4"]["window_seconds"]) == (4.0, 1.0)  # 4 frames at 4 fps
    # same features as decoding and running the model by hand
    from tada_zoo.data import open_video
    with open_video(videos / "sub" / "v0.mp4") as rd:
        clip = tf(rd.frames_at([4, 5, 6, 7]))
    torch.testing.assert_close(load_file(tmp_path / "sub" / "v0.safetensors")["features"][1], ex(clip)[0],
                               rtol=1e-4, atol=1e-5)
    # a rerun skips finished videos (their files are untouched) and retries the broken one
    mtime = (tmp_path / "sub" / "v1.safetensors").stat().st_mtime_ns
    r2 = extract_videos(ex, paths, tmp_path, 4, 1, 4, tf, workers=0, root=videos, progress=False)
    assert r2["skipped"] == 3 and r2["done"] == 0 and len(r2["failed"]) == 1
    assert (tmp_path / "sub" / "v1.safetensors").stat().st_mtime_ns == mtime
    assert len((tmp_path / "index.jsonl").read_text().splitlines()) == 4


def test_extract_resumes_from_rank_logs_and_a_cut_line(videos, tmp_path):
    """An interrupted torchrun run leaves rank logs (maybe with a half-written last line);
    a rerun with any number of processes honours them and merges them into index.jsonl."""
    from tada_zoo.data import EvalTransform

    ex = FeatureExtractor(tiny_model(), "pooled", batch_size=3)
    tf = EvalTransform(crop_size=32, short_side=32, num_crops=1)
    paths = [p for p in list_videos(videos) if p.name != "broken.mp4"]
    extract_videos(ex, paths[:1], tmp_path, 4, 1, 4, tf, workers=0, root=videos, progress=False)
    (tmp_path / "index.jsonl").rename(tmp_path / "index.rank1.jsonl")
    with open(tmp_path / "index.rank1.jsonl", "a") as f:
        f.write('{"video": "sub/v1.mp4", "sta')  # killed mid-write
    mtime = (tmp_path / "sub" / "v0.safetensors").stat().st_mtime_ns
    r = extract_videos(ex, paths, tmp_path, 4, 1, 4, tf, workers=0, root=videos, progress=False)
    assert r["skipped"] == 1 and r["done"] == 2 and not r["failed"]
    assert (tmp_path / "sub" / "v0.safetensors").stat().st_mtime_ns == mtime
    assert not list(tmp_path.glob("index.rank*.jsonl"))
    lines = [json.loads(line) for line in (tmp_path / "index.jsonl").read_text().splitlines()]
    assert sorted(e["video"] for e in lines) == ["sub/v0.mp4", "sub/v1.mp4", "sub/v2.mp4"]
    assert all(e["status"] == "ok" for e in lines)


def test_extract_command_npy(videos, tmp_path):
    from tada_zoo.cli import main

    rc = main(["extract", "--model", "tsn_r50_8f", "--input", str(videos / "sub" / "v2.mp4"), "--output", str(tmp_path),
               "--clip-len", "4", "--frame-interval", "2", "--clip-stride", "2", "--size", "32", "--layer", "map",
               "--format", "npy", "--workers", "0", "--quiet",
               "--model-kwargs", json.dumps(dict(layers=[1, 1, 1, 1], widths=[8, 16, 32, 64], stem_width=8))])
    assert rc == 0
    feats = np.load(tmp_path / "v2.npy")
    assert feats.shape == (5, 256, 4, 1, 1)  # starts 0, 2, 4, 6, 8 of 9 frames
    entry = json.loads((tmp_path / "index.jsonl").read_text())
    assert entry["start_frames"] == [0, 2, 4, 6, 8] and len(entry["timestamps"]) == 5
