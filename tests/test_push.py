"""tada-zoo push: a fine-tuned run -> a Hub folder whose every statement is the run's, uploaded through
huggingface_hub (its API replaced by a local recorder: the Hub is unreachable here) and loaded back
through hf-hub: (offline cache) and local-dir: with the run's logits, class names and protocol."""
import json
import shutil
from pathlib import Path

import pytest
import timm
import torch
from safetensors import safe_open

from tada_zoo.cli import main
from tada_zoo.data.protocol import TRAINING_ONLY, protocol_from_cfg
from tada_zoo.engine.checkpoint import resolve_run, run_metadata, run_protocol, save_safetensors
from tada_zoo.models import create_video_model

from _engine_utils import TINY, one_thread, train_shapes_run  # noqa: F401

CLASSES = ("left", "right", "up")  # moving_shape_clip labels 0, 1, 2


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train_shapes_run(tmp_path_factory, CLASSES)


@pytest.fixture(scope="module")
def videos(trained):
    return trained[1]


@pytest.fixture(scope="module")
def run(trained):
    """The run, evaluated with tada-zoo evaluate --output RUN/eval."""
    out, root = trained
    assert main(["evaluate", "--checkpoint", str(out / "best.safetensors"), "--data-root", str(root),
                 "--clips", "2", "--crops", "1", "--output", str(out / "eval"), "--num-frames", "4", "--workers", "0",
                 "--quiet"]) == 0
    return out


def _run_model(weights: Path):
    info = resolve_run(weights)
    model = create_video_model(info["model"], 3, checkpoint=weights, head="strict", **info["model_kwargs"]).eval()
    return model, info


def _clip(model, size=37):
    return torch.randn(2, 3, model.num_frames, size, size, generator=torch.Generator().manual_seed(1))


def _loads_back_as_the_run(source: str, weights: Path) -> None:
    model, info = _run_model(weights)
    loaded = timm.create_model(source, pretrained=True).eval()
    assert type(loaded) is type(model) and loaded.num_classes == 3
    with torch.no_grad():
        torch.testing.assert_close(loaded(_clip(model)), model(_clip(model)))
    assert list(loaded.pretrained_cfg["label_names"]) == list(CLASSES)
    ours, theirs = vars(run_protocol(model, info)), vars(protocol_from_cfg(loaded.pretrained_cfg))
    assert {k: v for k, v in theirs.items() if k not in TRAINING_ONLY} == \
        {k: v for k, v in ours.items() if k not in TRAINING_ONLY}


def test_dry_run_writes_a_truthful_folder(run, tmp_path, capsys):
    from huggingface_hub import ModelCard

    out = tmp_path / "repo"
    assert main(["push", str(run), "--repo", "someone/shapes", "--dry-run", str(out), "--dataset", "Shapes-3"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert "wrote" in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    text = (out / "config.json").read_text() + (out / "README.md").read_text()
    # nothing of the tag it borrowed its recipe from is claimed: not its dataset, classes, views or accuracy
    assert "kinetics" not in text.lower() and "k400" not in config["pretrained_cfg"].get("tag", "")
    assert config["label_names"] == list(CLASSES) and config["num_classes"] == 3
    video, facts = config["video"], config["provenance"]
    assert video["dataset"] == facts["dataset"] == "Shapes-3" and video["init"] == facts["init"] == "random"
    assert facts["base_model"] is None and facts["training_data"]["name"] == "my-shapes"
    assert facts["training_data"]["train_videos"] + facts["training_data"]["val_videos"] == 9
    model, info = _run_model(run / "best.safetensors")
    protocol = run_protocol(model, info)
    assert (video["eval_clips"], video["eval_crops"], video["num_frames"]) == (protocol.clips, protocol.crops, 4)
    # the card: HF metadata for a video model, and model-index = evaluate's figures of these weights
    evaluated = json.loads((run / "eval" / "metrics.json").read_text())["tada2d_r50_8f.k400"]
    card = ModelCard((out / "README.md").read_text())
    assert card.data.library_name == "timm" and card.data.pipeline_tag == "video-classification"
    assert card.data.base_model is None
    (top1,) = card.data.eval_results  # 3 classes: no top-5
    assert top1.metric_value == evaluated["top1"] == video["top1"] and top1.dataset_name == "Shapes-3"
    assert evaluated["protocol"] in card.text and "random weights" in card.text
    assert "hf-hub:someone/shapes" in card.text and "@inproceedings{huang2022tada" in card.text
    _loads_back_as_the_run(f"local-dir:{out}", run / "best.safetensors")


def test_push_uploads_the_folder_and_it_loads_from_the_hf_cache(run, videos, tmp_path, monkeypatch, capsys):
    import huggingface_hub
    import huggingface_hub.constants as hf_constants

    remote, calls = tmp_path / "remote", []

    class RecordingApi:  # what HfApi would do, recorded: create the repo, upload the folder
        def __init__(self, token=None):
            calls.append(("token", token))

        def create_repo(self, repo_id, private=False, exist_ok=False):
            calls.append(("create", repo_id, private, exist_ok))
            return type("RepoUrl", (), {"repo_id": repo_id})()

        def upload_folder(self, repo_id, folder_path, commit_message, allow_patterns):
            calls.append(("upload", repo_id, tuple(allow_patterns)))
            shutil.copytree(folder_path, remote)

    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingApi)
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    assert main(["push", str(run / "best.safetensors"), "--repo", "someone/shapes", "--private"]) == 0
    assert calls[:2] == [("token", "hf_test"), ("create", "someone/shapes", True, True)]
    assert calls[2][:2] == ("upload", "someone/shapes") and len(calls) == 3
    # what was uploaded is what --dry-run writes
    assert main(["push", str(run), "--repo", "someone/shapes", "--dry-run", str(tmp_path / "dry")]) == 0
    for name in ("config.json", "README.md"):
        assert (remote / name).read_bytes() == (tmp_path / "dry" / name).read_bytes(), name
    # (the safetensors header's metadata order is not fixed: compare what it holds)
    with safe_open(remote / "model.safetensors", "pt") as a, safe_open(tmp_path / "dry" / "model.safetensors", "pt") as b:
        assert a.metadata() == b.metadata() and a.keys() == b.keys()
        assert all(torch.equal(a.get_tensor(k), b.get_tensor(k)) for k in a.keys())
    # the Hub's files in huggingface_hub's cache layout, read offline
    rev = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hf_cache" / "models--someone--shapes"
    shutil.copytree(remote, repo / "snapshots" / rev)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(rev)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    _loads_back_as_the_run("hf-hub:someone/shapes", run / "best.safetensors")
    # the published model classifies as the run does: the Python API and tada-zoo predict
    from tada_zoo import VideoClassifier

    clip = videos / "up" / "clip0.mp4"
    expected = VideoClassifier.from_pretrained(run)(clip, topk=3)
    assert [t["name"] for t in expected] != [None] * 3 and sorted(t["name"] for t in expected) == sorted(CLASSES)
    for source in ("hf-hub:someone/shapes", tmp_path / "dry", f"local-dir:{tmp_path / 'dry'}"):
        clf = VideoClassifier.from_pretrained(source)
        assert clf(clip, topk=3) == expected and clf([clip, clip], topk=3) == [expected, expected]
    capsys.readouterr()
    assert main(["predict", str(clip), "--model", "hf-hub:someone/shapes", "--top-k", "3", "--json", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["top"] == expected


def test_base_model_is_the_registered_weights_training_started_from(tmp_path):
    """A run started from a tag's weights names that Hub repo as base_model (and links it)."""
    from huggingface_hub import ModelCard

    from tada_zoo.weights.publish import write_run_folder

    torch.manual_seed(0)
    model = timm.create_model("tada2d_r50_8f.k400", num_classes=3, **TINY)
    meta = run_metadata("tada2d_r50_8f.k400", dict(TINY, num_frames=8), [3], list(CLASSES), {},
                        init="tada2d_r50_8f.k400", dataset=dict(name="my-shapes", train_videos=6, val_videos=3))
    save_safetensors(model.state_dict(), tmp_path / "w.safetensors", metadata=meta)
    out = write_run_folder(tmp_path / "w.safetensors", tmp_path / "repo")
    card = ModelCard((out / "README.md").read_text())
    assert card.data.base_model == "tada-zoo/tada2d_r50_8f.k400" and card.data.eval_results is None
    assert "https://huggingface.co/tada-zoo/tada2d_r50_8f.k400" in card.text and "no accuracy is claimed" in card.text


def test_convert_of_a_run_uses_its_stored_model(run, tmp_path, capsys):
    """convert rebuilds a run's weights with the arguments they store (it used to build the default
    network and fail on hundreds of missing keys); a --model that disagrees is one line."""
    assert main(["convert", "--checkpoint", str(run / "best.safetensors"), "--output", str(tmp_path / "c")]) == 0
    _loads_back_as_the_run(f"local-dir:{tmp_path / 'c'}", run / "best.safetensors")
    capsys.readouterr()
    assert main(["convert", "--model", "tsn_r50_8f", "--checkpoint", str(run / "best.safetensors"),
                 "--output", str(tmp_path / "d")]) == 1
    err = capsys.readouterr().err.strip()
    assert "--model tsn_r50_8f disagrees" in err and "\n" not in err and not (tmp_path / "d").exists()


def test_push_errors_are_one_line_and_write_nothing(run, tmp_path, capsys):
    plain = tmp_path / "plain.safetensors"
    save_safetensors(timm.create_model("tada2d_r50_8f", num_classes=3, **TINY).state_dict(), plain)
    other_eval = tmp_path / "other.json"
    other_eval.write_text(json.dumps({"m": {"top1": 99.0, "checkpoint_sha256": "0" * 64}}))
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    cases = [
        ([str(run), "--repo", "noslash"], "not a Hub repo id"),
        ([str(tmp_path / "missing"), "--repo", "a/b"], "neither a run folder nor a weights file"),
        ([str(tmp_path), "--repo", "a/b"], "holds no best.safetensors or last.safetensors"),
        ([str(plain), "--repo", "a/b"], "was not written by tada-zoo train"),
        ([str(run), "--repo", "a/b", "--eval", str(other_eval)], "is not the metrics.json of a tada-zoo evaluate"),
        ([str(run), "--repo", "a/b", "--dry-run", str(tmp_path / "full")], "already exists"),
    ]
    for args, message in cases:
        assert main(["push", *args, "--dry-run", str(tmp_path / "out")] if "--dry-run" not in args
                    else ["push", *args]) == 1, args
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err and "Traceback" not in err, (args, err)
        assert not (tmp_path / "out").exists()
