"""Evaluation: multi-view averaging after softmax, accuracies, ensembles, the evaluate command."""
import csv
import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from tada_zoo.engine.evaluate import evaluate_model
from tada_zoo.engine.metrics import compute_metrics, ensemble_scores

from _engine_utils import TINY, tiny_model, one_thread  # noqa: F401


class MeanModel(torch.nn.Module):
    """Logits = per-channel mean of the clip: an independent formula for the expected scores."""

    def forward(self, x):
        return x.mean((2, 3, 4)) * 3


class Views(torch.utils.data.Dataset):
    """``videos`` x ``clips`` items of ``(crops, 3, 2, 4, 4)``, laid out like VideoDataset(train=False)."""

    def __init__(self, videos=5, clips=2, crops=3):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(videos, clips, crops, 3, 2, 4, 4, generator=g)
        self.clips = clips
        self.samples = [(f"v{i}.mp4", i % 3) for i in range(videos)]

    def __len__(self):
        return len(self.x) * self.clips

    def __getitem__(self, i):
        v, c = divmod(i, self.clips)
        return dict(video=self.x[v, c], label=self.samples[v][1], index=v, clip_index=c)


def test_multiview_scores_average_softmax_over_clips_and_crops():
    ds = Views()
    res = evaluate_model(MeanModel(), ds, [3], batch_size=3, workers=0, progress=False)
    x = ds.x.numpy().astype(np.float64)
    logits = x.mean(axis=(4, 5, 6)) * 3  # (videos, clips, crops, classes)
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    expected = probs.mean(axis=(1, 2))
    np.testing.assert_allclose(res["scores"][0].numpy(), expected, rtol=1e-5, atol=1e-6)
    assert res["views"].tolist() == [6.0] * 5
    assert res["labels"][:, 0].tolist() == [0, 1, 2, 0, 1]
    # averaging logits instead would give a different answer: the test can tell
    soft_of_mean = np.exp(logits.mean((1, 2))) / np.exp(logits.mean((1, 2))).sum(-1, keepdims=True)
    assert not np.allclose(soft_of_mean, expected, atol=1e-4)


def test_metrics_and_ensemble():
    s = torch.tensor([[.6, .3, .1], [.2, .5, .3], [.1, .2, .7], [.5, .4, .1]])
    labels = torch.tensor([0, 2, 2, 1])
    m = compute_metrics([s], labels)
    assert m["top1"] == pytest.approx(50.0)  # videos 0 and 2 right
    assert m["per_class"] == {0: 100.0, 1: 0.0, 2: 50.0}
    assert m["mean_class_acc"] == pytest.approx(50.0)
    assert "top5" not in m  # 3 classes: every video is in its top 5
    many = torch.eye(7)[[1, 2, 3, 4, 5, 6, 0, 0]] + torch.linspace(0, 0.1, 7)  # top-5 of each: 6, 5, 4, 3 + its own
    m7 = compute_metrics([many], torch.tensor([1, 2, 3, 4, 5, 6, 3, 1]))  # the last two wrong, one in the top 5
    assert m7["top1"] == pytest.approx(75.0) and m7["top5"] == pytest.approx(87.5)
    # two heads: action = both right
    verb = torch.tensor([[.9, .1], [.9, .1], [.1, .9]])
    noun = torch.tensor([[.9, .1], [.1, .9], [.1, .9]])
    m2 = compute_metrics([verb, noun], torch.tensor([[0, 0], [0, 0], [1, 1]]))
    assert m2["head0"]["top1"] == pytest.approx(100.0) and m2["head1"]["top1"] == pytest.approx(200 / 3)
    assert m2["action_top1"] == m2["top1"] == pytest.approx(200 / 3)
    ens = ensemble_scores([[s], [s.flip(1)]])
    torch.testing.assert_close(ens[0], (s + s.flip(1)) / 2)


@pytest.fixture(scope="module")
def tiny_videos(tmp_path_factory):
    from tada_zoo.data.synthetic import make_moving_shapes

    root = tmp_path_factory.mktemp("shapes")
    make_moving_shapes(root, num_train=4, num_val=4, num_frames=8, size=32, num_classes=2)
    return root


def test_evaluate_command_ensemble(tiny_videos, tmp_path):
    from tada_zoo.cli import main

    for seed, name in ((0, "a"), (1, "b")):
        torch.manual_seed(seed)
        m = tiny_model(num_classes=2)
        save_file(m.state_dict(), tmp_path / f"{name}.safetensors")
    rc = main(["evaluate", "--model", "tada2d_r50_8f", "tada2d_r50_8f", "--checkpoint", str(tmp_path / "a.safetensors"),
               str(tmp_path / "b.safetensors"), "--data-root", str(tiny_videos), "--val-list",
               str(tiny_videos / "val.txt"), "--num-classes", "2", "--clips", "2", "--crops", "3",
               "--test-size", "32", "--num-frames", "4", "--frame-interval", "2", "--workers", "0",
               "--model-kwargs", json.dumps(TINY), "--output", str(tmp_path / "eval"), "--quiet"])
    assert rc == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert set(metrics) == {"tada2d_r50_8f[0]", "tada2d_r50_8f[1]", "ensemble"}
    assert metrics["tada2d_r50_8f[0]"]["top1"] in (0.0, 25.0, 50.0, 75.0, 100.0)
    rows = list(csv.DictReader(open(tmp_path / "eval" / "predictions.csv")))
    assert [r["video"] for r in rows] == [f"videos/val/{i:05d}.mp4" for i in range(4)]
    assert [int(r["label"]) for r in rows] == [0, 1, 0, 1]


def test_evaluate_runs_the_tags_original_protocol_and_says_so(tiny_videos, tmp_path, capsys):
    """No view flags: a .k400 tag is evaluated with its reported views (10 clips x 3 crops, 30-fps windows)."""
    from tada_zoo.cli import main

    weights = tmp_path / "tiny.safetensors"  # a tagged name without --checkpoint would load the tag's weights
    save_file(tiny_model(num_classes=2).state_dict(), weights)
    common = ["evaluate", "--model", "tada2d_r50_8f.k400", "--checkpoint", str(weights), "--data-root",
              str(tiny_videos), "--val-list", str(tiny_videos / "val.txt"), "--num-classes", "2", "--test-size", "32",
              "--workers", "0", "--model-kwargs", json.dumps(TINY), "--quiet"]
    assert main(common + ["--output", str(tmp_path / "a")]) == 0
    printed = capsys.readouterr().out
    protocol = "interval sampling, 8 frames every 8 at 30 fps; 10 clips x 3 crops, short side 32, crop 32"
    assert protocol in printed
    assert json.loads((tmp_path / "a" / "metrics.json").read_text())["tada2d_r50_8f.k400"]["protocol"] == protocol
    assert main(common + ["--clips", "2", "--crops", "1", "--target-fps", "0"]) == 0
    assert "interval sampling, 8 frames every 8; 2 clips x 1 crop," in capsys.readouterr().out


@pytest.mark.parametrize("flag", ["--clips=0", "--target-fps=-1", "--num-frames=x", "--frame-interval=0"])
def test_evaluate_rejects_bad_numbers_where_parsed(flag, capsys):
    from tada_zoo.cli import main

    with pytest.raises(SystemExit) as e:
        main(["evaluate", "--model", "tada2d_r50_8f", "--data-root", ".", "--val-list", "x", "--num-classes", "2", flag])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"argument {flag.split('=')[0]}" in err and ("must be" in err or "expected" in err)
