"""tada-zoo serve: the page answers an upload with the classifier's own top-5 and pictures, refuses what
it must (too big, too long, not a video, empty; any server file through Gradio's file route), keeps no
upload, listens on 127.0.0.1 unless told otherwise; and in a real browser (headless Chromium) the page
shows the top class and renders its pictures."""
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import timm
import torch

from tada_zoo.cli import main
from tada_zoo.engine.checkpoint import run_metadata, save_safetensors

from _engine_utils import HANG_GUARD, TINY, free_port, one_thread, train_shapes_run  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent
CLASSES = ("left", "right", "up")  # moving_shape_clip labels 0, 1, 2
FPS = 30
MAX_UPLOAD_MB, MAX_SECONDS = 0.1, 1.0  # the test server's caps: the clip passes, big.mp4 / long.mp4 do not

gradio = pytest.importorskip("gradio", reason="tada-zoo serve needs gradio (pip install 'tada-zoo[serve]')")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny 3-class checkpoint (random weights, class names, 32-pixel protocol) and test videos."""
    from tada_zoo.data.synthetic import moving_shape_clip, write_video

    d = tmp_path_factory.mktemp("serve")
    torch.manual_seed(0)
    model = timm.create_model("tada2d_r50_8f.k400", num_classes=3, **TINY)
    meta = run_metadata("tada2d_r50_8f.k400", dict(TINY, num_frames=4), [3], list(CLASSES), {"train_crop": 32})
    save_safetensors(model.state_dict(), d / "w.safetensors", metadata=meta)
    rng = np.random.default_rng(0)
    write_video(d / "clip.mp4", moving_shape_clip(2, 8, 32, rng), fps=FPS)  # 8 / 30 s
    write_video(d / "long.mp4", moving_shape_clip(0, 40, 32, rng), fps=FPS)  # 40 / 30 s > MAX_SECONDS
    write_video(d / "big.mp4", rng.integers(0, 256, (30, 64, 64, 3), dtype=np.uint8), fps=FPS)  # noise: ~150 KB
    (d / "junk.mp4").write_bytes(rng.integers(0, 256, 2000, dtype=np.uint8).tobytes())
    (d / "empty.mp4").write_bytes(b"")
    write_video(d / "examples" / "moving up.mp4", moving_shape_clip(2, 8, 32, rng), fps=FPS)
    assert (d / "big.mp4").stat().st_size > MAX_UPLOAD_MB * 2 ** 20 > (d / "long.mp4").stat().st_size
    return d



def _files_under(folder: Path) -> list:
    return sorted(str(Path(d) / f) for d, _, names in os.walk(folder) for f in names)


@contextmanager
def serving(args, tmp: Path):
    """``tada-zoo serve ARGS --port FREE`` as a subprocess (TMPDIR=tmp) until the page answers; yields
    (url, process); stopped with SIGTERM (as Ctrl+C would) and waited for, whatever happens."""
    import requests

    port = free_port()
    env = dict(os.environ, TMPDIR=str(tmp), PYTHONPATH=str(ROOT), GRADIO_ANALYTICS_ENABLED="False")
    proc = subprocess.Popen([sys.executable, "-m", "tada_zoo.cli", "serve", *args, "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + HANG_GUARD
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"serve exited with {proc.returncode}: {proc.stderr.read()}")
            try:
                if requests.get(url, timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "serve did not answer"
            time.sleep(0.5)
        yield url, proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=HANG_GUARD)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="module")
def server(files, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("server_tmp")
    with serving(["--checkpoint", str(files / "w.safetensors"), "--max-upload-mb", str(MAX_UPLOAD_MB),
                  "--max-seconds", str(MAX_SECONDS), "--examples", str(files / "examples")], tmp) as (url, proc):
        yield url, tmp
    out, err = proc.communicate()
    assert "Traceback" not in out + err, err
    assert f"serving {url}" in out and "stopped" in out
    assert _files_under(tmp) == [] and not list(tmp.glob("tada-zoo-serve-*")), "the server left files behind"


def test_check_video_caps_size_and_length(files):
    from tada_zoo.deploy.app import UploadError, check_video

    assert check_video(files / "clip.mp4") == pytest.approx(8 / FPS)
    cases = [(files / "empty.mp4", {}, "the file is empty"),
             (files / "junk.mp4", {}, "not a video the page can read"),
             (files / "big.mp4", dict(max_upload_mb=MAX_UPLOAD_MB), f"up to {MAX_UPLOAD_MB:g} MB"),
             (files / "long.mp4", dict(max_seconds=MAX_SECONDS), f"is {40 / FPS:.1f} s long; this page takes videos up to 1 s")]
    for path, limits, message in cases:
        with pytest.raises(UploadError, match=message) as e:
            check_video(path, **limits)
        assert str(files) not in str(e.value)  # names no server folder


def test_serve_flags_are_checked_where_parsed(files, tmp_path, capsys, monkeypatch):
    w = str(files / "w.safetensors")
    for flag, value in (("--max-upload-mb", "0"), ("--max-seconds", "-1"), ("--port", "70000"), ("--port", "x")):
        with pytest.raises(SystemExit) as e:
            main(["serve", "--checkpoint", w, flag, value])
        assert e.value.code == 2 and f"argument {flag}" in capsys.readouterr().err
    assert main(["serve", "--checkpoint", w, "--examples", str(tmp_path / "none")]) == 1
    assert capsys.readouterr().err.strip() == f"tada-zoo serve: error: --examples {tmp_path / 'none'}: no such folder"
    monkeypatch.setitem(sys.modules, "gradio", None)  # gradio not installed
    assert main(["serve", "--checkpoint", w]) == 1
    assert capsys.readouterr().err.strip() == "tada-zoo serve: error: the web page needs gradio: pip install 'tada-zoo[serve]'"


def test_serve_listens_on_localhost_unless_told(files, capsys, monkeypatch):
    import tada_zoo.cli.serve as serve

    seen = []

    @contextmanager
    def fake_app(clf, host, port, *args):
        seen.append((host, port))
        yield f"http://{host}:{port}/"

    monkeypatch.setattr(serve, "running_app", fake_app)
    monkeypatch.setattr(serve, "_wait", lambda: None)
    assert main(["serve", "--checkpoint", str(files / "w.safetensors")]) == 0
    assert seen[-1] == ("127.0.0.1", 7860) and "warning" not in capsys.readouterr().err
    assert main(["serve", "--checkpoint", str(files / "w.safetensors"), "--host", "0.0.0.0", "--port", "8000"]) == 0
    err = capsys.readouterr().err.strip()
    assert seen[-1] == ("0.0.0.0", 8000)
    assert err == ("warning: --host 0.0.0.0: the page is reachable from other machines; anyone who reaches it can "
                   "run the model on their uploads")


def test_page_answers_with_the_classifiers_top5_and_keeps_no_upload(server, files):
    from gradio_client import Client, handle_file

    from tada_zoo import VideoClassifier

    url, tmp = server
    expected = VideoClassifier.from_pretrained(files / "w.safetensors")(files / "clip.mp4", topk=5)
    label, status, pictures = Client(url, verbose=False).predict(handle_file(str(files / "clip.mp4")),
                                                                 api_name="/classify")
    assert label["label"] == expected[0]["name"]
    assert [(c["label"], c["confidence"]) for c in label["confidences"]] == \
        [(t["name"], pytest.approx(t["score"], abs=1e-6)) for t in expected]
    assert "data:image/gif;base64," in pictures and "data:image/png;base64," in pictures  # Grad-CAM, alpha_t
    assert f"{8 / FPS:.1f} s of video" in status
    assert _files_under(tmp) == []  # the upload is gone once answered


def test_bad_uploads_are_a_message_on_the_page(server, files):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    url, tmp = server
    client = Client(url, verbose=False)
    for name, message in (("junk.mp4", "this is not a video the page can read"), ("empty.mp4", "the file is empty"),
                          ("long.mp4", "is 1.3 s long; this page takes videos up to 1 s")):
        with pytest.raises(AppError, match=message) as e:
            client.predict(handle_file(str(files / name)), api_name="/classify")
        assert "Traceback" not in str(e.value) and str(tmp) not in str(e.value)
    with pytest.raises(Exception, match="413|[Ff]ile too large|exceeds the maximum"):  # refused at Gradio's upload route
        client.predict(handle_file(str(files / "big.mp4")), api_name="/classify")
    assert _files_under(tmp) == []


def test_file_route_serves_no_server_file(server, files):
    import requests

    url, tmp = server
    route = url + "gradio_api/file="
    (uploads,) = tmp.glob("tada-zoo-serve-*/uploads")
    control = uploads / "control" / "a.txt"  # a file in Gradio's upload folder: the route itself works
    control.parent.mkdir(parents=True, exist_ok=True)
    control.write_text("hello")
    try:
        assert requests.get(route + str(control), timeout=30).text == "hello"
    finally:
        control.unlink()
        control.parent.rmdir()
    for path in (files / "w.safetensors", "/etc/passwd", f"{uploads}/../../../{files.name}/w.safetensors",
                 files / "clip.mp4", Path(__file__)):
        assert requests.get(route + str(path), timeout=30).status_code == 403, path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 3-class run of tada-zoo train on class folders (as tests/test_push.py's) and its videos."""
    return train_shapes_run(tmp_path_factory, CLASSES)


def _chromium():
    """A headless Chromium driven by Debian's chromedriver (nothing downloaded); skip without them."""
    import shutil

    webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium")
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (browser and driver):
        pytest.skip("headless Chromium is not installed (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1400"):
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(driver))


def test_page_in_a_real_browser(trained, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tada_zoo import VideoClassifier

    run, videos = trained
    video = videos / "up" / "clip0.mp4"
    expected = VideoClassifier.from_pretrained(run)(video, topk=5)[0]["name"]
    tmp, shot = tmp_path / "tmp", tmp_path / "serve-page.png"
    tmp.mkdir()
    browser = _chromium()
    try:
        with serving(["--checkpoint", str(run)], tmp) as (url, proc):
            browser.get(url)
            wait = WebDriverWait(browser, HANG_GUARD, poll_frequency=0.5)
            wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "input[type=file]"))[0].send_keys(str(video))
            wait.until(lambda b: b.execute_script(
                "const i = document.getElementById('gradcam'); return i !== null && i.complete && i.naturalWidth > 0"))
            shown = browser.find_element(By.CSS_SELECTOR, "[data-testid='label-output-value']").text
            widths = browser.execute_script(
                "return ['gradcam', 'alpha-plot'].map(id => document.getElementById(id).naturalWidth)")
            toasts = [t.text for t in browser.find_elements(By.CSS_SELECTOR, "[data-testid='toast-body']")]
            browser.save_screenshot(str(shot))
            print(f"screenshot of the page: {shot}")
    finally:
        browser.quit()
    assert shown == expected
    assert all(w > 0 for w in widths), widths  # the Grad-CAM GIF and the alpha_t plot rendered
    # no error on the page (Chromium cannot play the preview of write_video's MPEG-4 part 2: the player says so)
    assert [t for t in toasts if "Video not playable" not in t] == [], toasts
    assert _files_under(tmp) == []  # nothing of the upload is left


def test_push_with_app_writes_a_space_app_that_serves_the_page(files, tmp_path, monkeypatch):
    """push --with-app: app.py + requirements.txt next to the weights; app.py builds the page for the weights
    next to it (no network) and that page answers as the classifier does; push uploads the two files too."""
    import runpy

    import huggingface_hub
    from gradio_client import Client, handle_file

    from tada_zoo import VideoClassifier

    out = tmp_path / "repo"
    assert main(["push", str(files / "w.safetensors"), "--repo", "someone/shapes", "--dry-run", str(out),
                 "--with-app"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "app.py", "config.json", "model.safetensors",
                                                      "requirements.txt"]
    assert "tada-zoo[serve]>=" in (out / "requirements.txt").read_text()
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "uploads"))
    space = runpy.run_path(str(out / "app.py"), run_name="space_app")  # what the Space runs, without launching
    assert isinstance(space["demo"], gradio.Blocks) and space["SOURCE"] == f"local-dir:{out}"
    assert space["REPO"] == "someone/shapes"
    expected = VideoClassifier.from_pretrained(files / "w.safetensors")(files / "clip.mp4", topk=5)
    demo = space["demo"]
    demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        label, _, _ = Client(demo.local_url, verbose=False).predict(handle_file(str(files / "clip.mp4")),
                                                                    api_name="/classify")
    finally:
        demo.close()
    assert [c["label"] for c in label["confidences"]] == [t["name"] for t in expected]
    # push uploads them with the model
    patterns = []

    class RecordingApi:
        def __init__(self, token=None):
            pass

        def create_repo(self, repo_id, private=False, exist_ok=False):
            return type("RepoUrl", (), {"repo_id": repo_id})()

        def upload_folder(self, repo_id, folder_path, commit_message, allow_patterns):
            patterns.extend(allow_patterns)

    monkeypatch.setattr(huggingface_hub, "HfApi", RecordingApi)
    assert main(["push", str(files / "w.safetensors"), "--repo", "someone/shapes", "--with-app"]) == 0
    assert sorted(patterns) == ["README.md", "app.py", "config.json", "model.safetensors", "requirements.txt"]


def test_examples_are_picked_by_name_only(server, files):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    from tada_zoo import VideoClassifier

    url, tmp = server
    example = files / "examples" / "moving up.mp4"
    expected = VideoClassifier.from_pretrained(files / "w.safetensors")(example, topk=5)
    client = Client(url, verbose=False)
    label, _, _ = client.predict("moving up.mp4", api_name="/example")
    assert [c["label"] for c in label["confidences"]] == [t["name"] for t in expected]
    assert example.is_file()  # an example is never deleted
    for name in ("/etc/passwd", str(files / "w.safetensors"), "../w.safetensors"):  # a path is no example
        with pytest.raises(AppError) as e:
            client.predict(name, api_name="/example")
        assert "Traceback" not in str(e.value)
    assert _files_under(tmp) == []
