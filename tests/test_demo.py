"""`make demo` (tada_zoo.cli.demo) on a few videos: it runs end to end and keeps what it wrote."""
import pytest

from tada_zoo.cli import demo


def test_demo_keeps_its_folder_and_replaces_only_its_own(tmp_path, capsys):
    work = tmp_path / "demo"
    small = ["--workdir", str(work), "--epochs", "1", "--train-videos", "8", "--val-videos", "4", "--workers", "0"]
    assert demo.main(small) == 0
    out = capsys.readouterr().out
    assert f"everything is in {work}/" in out and "TAda2D - TSN:" in out
    assert (work / "runs" / "tada2d_r50_8f" / "best.safetensors").is_file()
    assert (work / "eval" / "tsn_r50_8f" / "metrics.json").is_file() and list((work / "features").glob("*.safetensors"))
    (work / "runs" / "stale").mkdir()
    assert demo.main(small) == 0  # an earlier demo's folder: replaced, nothing resumed
    assert not (work / "runs" / "stale").exists()
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("x")
    with pytest.raises(SystemExit, match="is not empty and not an earlier demo's folder"):
        demo.main(["--workdir", str(other)])
    assert (other / "notes.txt").read_text() == "x"
