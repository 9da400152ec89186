"""predict: top-k class names of videos with the model's own test views, from a checkpoint alone."""
import json

import numpy as np
import pytest
import torch

from _engine_utils import TINY, tiny_model, one_thread  # noqa: F401
from tada_zoo.cli import main
from tada_zoo.engine.checkpoint import run_metadata, save_safetensors
from tada_zoo.inference.predict import dataset_class_names, load_classifier

NAMES = ["left", "right", "up", "down"]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    from tada_zoo.data.synthetic import moving_shape_clip, write_video

    root = tmp_path_factory.mktemp("predict")
    rng = np.random.default_rng(0)
    for i in range(3):
        write_video(root / "clips" / ("sub" if i == 2 else "") / f"v{i}.mp4", moving_shape_clip(i, 8, 32, rng))
    (root / "clips" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom" + b"\x00" * 200)
    return root


def _checkpoint(path, num_classes=4, class_names=NAMES, trained=True, model="tada2d_r50_8f"):
    net = tiny_model(num_classes=num_classes, num_frames=4)
    meta = run_metadata(model, dict(TINY, num_frames=4), [num_classes], class_names, dict(test_crop=32)) \
        if trained else None
    save_safetensors(net.state_dict(), path, metadata=meta)
    return net


def test_ssv2_names_follow_the_official_label_ids():
    names = dataset_class_names("ssv2")
    assert len(names) == 174 and len(set(names)) == 174
    # the official ids are the templates in sorted order; the original's direction swap pairs agree
    assert names == sorted(names)
    from tada_zoo.data.protocol import SSV2_FLIP_LABELS

    for a, b in SSV2_FLIP_LABELS.items():
        assert names[a].replace("left", "X").replace("right", "left").replace("X", "right") == names[b]
    assert dataset_class_names("kinetics400") is None


def test_predict_averages_softmax_over_the_views_with_names(videos, tmp_path):
    net = _checkpoint(tmp_path / "m.safetensors")
    clf = load_classifier(checkpoint=tmp_path / "m.safetensors", clips=2, crops=3)
    assert clf.class_names == NAMES and clf.note is None and clf.protocol.test_crop == 32
    v = videos / "clips" / "v0.mp4"
    [res] = clf.predict([v], topk=3)
    # independently: every clip x crop through the saved weights, softmax, mean
    (videos / "one.txt").write_text(f"{v} 0\n")
    ds = clf.protocol.dataset("", videos / "one.txt", train=False)
    net.eval()
    with torch.no_grad():
        probs = torch.cat([net(ds[c]["video"]).softmax(-1) for c in range(2)]).mean(0)
    top = probs.topk(3)
    assert [i for i, _, _ in res["top"]] == top.indices.tolist()
    assert [n for _, n, _ in res["top"]] == [NAMES[i] for i in top.indices.tolist()]
    assert [s for _, _, s in res["top"]] == pytest.approx(top.values.tolist(), abs=1e-5)


def test_predict_cli_on_a_folder_skips_unreadable_videos_and_prints_json(videos, tmp_path, capsys):
    _checkpoint(tmp_path / "m.safetensors")
    rc = main(["predict", str(videos / "clips"), "--checkpoint", str(tmp_path / "m.safetensors"), "--json",
               "--top-k", "2", "--clips", "1", "--crops", "1", "--workers", "0", "--quiet"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    rows = json.loads(out)
    assert [r["video"] for r in rows] == ["sub/v2.mp4", "v0.mp4", "v1.mp4"]
    assert all(len(r["top"]) == 2 and r["top"][0]["score"] >= r["top"][1]["score"] for r in rows)
    assert all(t["name"] == NAMES[t["index"]] for r in rows for t in r["top"])
    assert "warning: skipping" in err and "broken.mp4" in err


def test_predict_cli_single_unreadable_video_is_one_line_error(videos, tmp_path, capsys):
    _checkpoint(tmp_path / "m.safetensors")
    rc = main(["predict", str(videos / "clips" / "broken.mp4"), "--checkpoint", str(tmp_path / "m.safetensors"),
               "--workers", "0", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and "broken.mp4" in err[-1] and "Traceback" not in "\n".join(err)


def test_labels_file_overrides_and_must_fit(videos, tmp_path, capsys):
    _checkpoint(tmp_path / "m.safetensors", class_names=None)
    (tmp_path / "names.txt").write_text("a\nb\nc\nd\n")
    base = ["predict", str(videos / "clips" / "v1.mp4"), "--checkpoint", str(tmp_path / "m.safetensors"),
            "--clips", "1", "--crops", "1", "--workers", "0", "--quiet"]
    assert main(base) == 0
    out, err = capsys.readouterr()
    assert "class " in out and "checkpoint names no classes" in err
    assert main(base + ["--labels", str(tmp_path / "names.txt"), "--top-k", "4"]) == 0
    out = capsys.readouterr().out
    assert all(f"  {n} (" in out for n in "abcd")
    (tmp_path / "three.txt").write_text("a\nb\nc\n")
    assert main(base + ["--labels", str(tmp_path / "three.txt")]) == 1
    assert "three.txt names 3 classes, but the model has 4 outputs" in capsys.readouterr().err


def test_registered_tags_name_ssv2_classes_and_say_kinetics_has_no_published_order(videos, tmp_path):
    from tada_zoo.data import protocol_from_cfg
    from tada_zoo.models import registered_cfg

    _checkpoint(tmp_path / "ssv2.safetensors", num_classes=174, trained=False)  # converted weights: no run info
    clf = load_classifier("tada2d_r50_8f.ssv2", tmp_path / "ssv2.safetensors", model_kwargs=dict(TINY, num_frames=4))
    assert clf.class_names == dataset_class_names("ssv2")
    expected = protocol_from_cfg(registered_cfg("tada2d_r50_8f.ssv2"), num_frames=4)
    assert clf.protocol == expected and (expected.sampling, expected.clips, expected.crops) == ("segment", 2, 3)
    _checkpoint(tmp_path / "k400.safetensors", num_classes=400, trained=False)
    clf = load_classifier("tada2d_r50_8f.k400", tmp_path / "k400.safetensors", model_kwargs=dict(TINY, num_frames=4),
                          test_crop=32, clips=1, crops=1)
    assert clf.class_names is None and "never published" in clf.note
    [res] = clf.predict([videos / "clips" / "v0.mp4"], topk=2)
    assert [n for _, n, _ in res["top"]] == [None, None]


def test_model_is_needed_without_a_run_checkpoint(tmp_path):
    _checkpoint(tmp_path / "plain.safetensors", trained=False)
    with pytest.raises(ValueError, match="--model is needed"):
        load_classifier(checkpoint=tmp_path / "plain.safetensors")
