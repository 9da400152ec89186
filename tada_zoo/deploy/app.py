"""A web page to try a video classifier: upload a video (or pick a bundled example) and see its
top-5 classes, the Grad-CAM animation and TAdaConv's calibration weights alpha_t.

``tada-zoo serve`` runs it (``running_app``); the ``app.py`` that ``tada-zoo push --with-app``
writes builds the same page (``build_app``) for a Hugging Face Space. Gradio is the ``serve``
extra, imported here only, when a page is built.

What a visitor can do is kept small, because the page may be reachable by others:

- only uploads and the bundled examples are read, examples by name from a fixed list; no file
  route serves anything else (the server's private upload folder is Gradio's only created path,
  the model's files are blocked as well);
- an upload is capped in size (Gradio refuses it at the upload route, ``check_video`` again)
  and in length, and deleted once it is answered; the pictures go back inline, so nothing of
  a visitor's video stays on the server;
- a bad upload (not a video, empty, too big, too long) is a one-line message on the page.
"""
import base64
import html
import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, Optional, Sequence, Union

from tada_zoo.data import VideoDecodeError, open_video
from tada_zoo.data.folders import find_videos

__all__ = ["INSTALL_HINT", "MAX_UPLOAD_MB", "MAX_SECONDS", "UploadError", "require_gradio", "check_video",
           "find_examples", "analyse_video", "build_app", "launch_options", "running_app", "is_local_host",
           "discard_upload", "space_files"]

INSTALL_HINT = "the web page needs gradio: pip install 'tada-zoo[serve]'"
MAX_UPLOAD_MB = 100.0  # default cap of one upload
MAX_SECONDS = 600.0  # default cap of a video's length
_LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
PathLike = Union[str, os.PathLike]


class UploadError(ValueError):
    """A visitor's file the page refuses; the message is what the page shows."""


def require_gradio():
    """The gradio module, or ImportError saying how to install it (one line)."""
    try:
        import gradio
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    return gradio


def is_local_host(host: str) -> bool:
    """Whether a server on ``host`` is reachable from this machine only."""
    return host in _LOCAL_HOSTS


def check_video(path: PathLike, max_upload_mb: float = MAX_UPLOAD_MB, max_seconds: float = MAX_SECONDS) -> float:
    """The length in seconds of an uploaded video; ``UploadError`` when it is empty, larger than
    ``max_upload_mb``, not a readable video, or longer than ``max_seconds``."""
    size = os.path.getsize(path)
    if size == 0:
        raise UploadError("the file is empty")
    if size > max_upload_mb * 2 ** 20:
        raise UploadError(f"the file is {size / 2 ** 20:.1f} MB; this page takes videos up to {max_upload_mb:g} MB")
    try:
        with open_video(path) as reader:
            frames, fps = len(reader), reader.fps
    except VideoDecodeError as e:
        raise UploadError(f"this is not a video the page can read ({_reason(e, path)})") from None
    seconds = frames / fps
    if seconds > max_seconds:
        raise UploadError(f"the video is {seconds:.1f} s long; this page takes videos up to {max_seconds:g} s")
    return seconds


def _reason(e: VideoDecodeError, path: PathLike) -> str:
    """Why a video cannot be decoded, naming the file but not where the server keeps it."""
    return e.reason.replace(os.fspath(path), Path(path).name)


def find_examples(folder: Optional[PathLike]) -> Dict[str, Path]:
    """``{name shown on the page: path}`` of the videos under ``folder`` (none without one)."""
    if folder is None:
        return {}
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"--examples {folder}: no such folder")
    videos = find_videos(root)
    if not videos:
        raise ValueError(f"--examples {folder}: no videos in it")
    return {p.relative_to(root).as_posix(): p for p in videos}


def _data_uri(path: Path, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def analyse_video(clf, path: PathLike, topk: int = 5, device="cpu") -> dict:
    """``clf``'s top-``topk`` of a video and the Grad-CAM of its top class (GIF) and alpha_t plot
    (PNG, None without TAdaConv layers) as data URIs; written to a temporary folder, then deleted."""
    from tada_zoo.inference.visualize import visualize_video

    top = clf(path, topk=topk, device=device)
    with tempfile.TemporaryDirectory(prefix="tada-zoo-serve-") as tmp:
        out = Path(tmp)
        visualize_video(clf.model, path, out, clf.protocol, class_index=top[0]["index"],
                        class_names=clf.class_names)
        alpha = out / "alpha.png"
        return dict(top=top, gif=_data_uri(out / "gradcam.gif", "image/gif"),
                    alpha=_data_uri(alpha, "image/png") if alpha.exists() else None)


def discard_upload(path: PathLike, upload_dir: PathLike) -> None:
    """Delete an answered upload and the folders Gradio made for it, only inside ``upload_dir``."""
    root = Path(upload_dir).resolve()
    p = Path(path).resolve()
    if root not in p.parents:
        return  # not an upload (an example): never deleted
    p.unlink(missing_ok=True)
    for folder in p.parents:
        if folder == root:
            break
        try:
            folder.rmdir()  # only when empty
        except OSError:
            break


def _label(item: dict) -> str:
    return str(item["name"]) if item["name"] is not None else f"class {item['index']}"


def _pictures_html(result: dict) -> str:
    alpha = (f'<img id="alpha-plot" alt="alpha_t over time" src="{result["alpha"]}" style="max-width:100%">'
             if result["alpha"] else "<p>This model has no TAdaConv layers, so no alpha_t.</p>")
    return (f'<h3>Grad-CAM of {html.escape(_label(result["top"][0]))}</h3><img id="gradcam" alt="Grad-CAM animation" '
            f'src="{result["gif"]}" style="max-width:100%"><h3>Calibration weights alpha_t</h3>{alpha}')


def _theme(gr):
    """Gradio's default look in the system fonts: the page fetches nothing from other sites."""
    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])


def _themed(gr, where) -> dict:
    """``theme=`` for ``Blocks`` (Gradio 4, 5) or for ``launch`` (Gradio 6 moved it there)."""
    import inspect

    in_launch = "theme" in inspect.signature(gr.Blocks.launch).parameters
    return dict(theme=_theme(gr)) if in_launch == (where == "launch") else {}


def launch_options(max_upload_mb: float = MAX_UPLOAD_MB, blocked: Sequence[PathLike] = ()) -> dict:
    """``Blocks.launch`` arguments of the rules above: the upload cap, no allowed paths, ``blocked``
    (the model's files) refused, errors shown as their message, no server-side rendering (Node)."""
    gr = require_gradio()
    return dict(max_file_size=int(max_upload_mb * 2 ** 20), allowed_paths=[], show_error=True, ssr_mode=False,
                blocked_paths=[str(Path(p).resolve()) for p in blocked], **_themed(gr, "launch"))


def _page_error(gr, message: str):
    """``gr.Error``: the page shows ``message``; the server log one line, not a traceback."""
    print(f"tada-zoo serve: refused: {message}", file=sys.stderr, flush=True)
    try:
        return gr.Error(message, print_exception=False)
    except TypeError:  # Gradio 4
        return gr.Error(message)


def _answer(gr, clf, path: str, limits: tuple, topk: int, device, delete: bool):
    """The page's outputs for one video; an ``UploadError`` or an unreadable video is ``gr.Error``
    (a message on the page); an upload is deleted once answered (``delete``)."""
    from gradio.utils import get_upload_folder

    try:
        seconds = check_video(path, *limits)
        result = analyse_video(clf, path, topk, device)
    except UploadError as e:
        raise _page_error(gr, str(e)) from None
    except VideoDecodeError as e:
        raise _page_error(gr, f"this video cannot be read ({_reason(e, path)})") from None
    except Exception as e:  # a visitor sees one line, the server log says more
        print(f"tada-zoo serve: {Path(path).name}: {type(e).__name__}: {e}", file=sys.stderr)
        raise _page_error(gr, f"the model could not analyse this video ({type(e).__name__})") from None
    finally:
        if delete:
            discard_upload(path, get_upload_folder())
    top1 = result["top"][0]
    status = (f"**{html.escape(_label(top1))}** ({top1['score']:.1%}) - {seconds:.1f} s of video, "
              f"{clf.protocol.describe()}")
    return {_label(t): t["score"] for t in result["top"]}, status, _pictures_html(result)


def build_app(clf, examples: Optional[PathLike] = None, max_upload_mb: float = MAX_UPLOAD_MB,
              max_seconds: float = MAX_SECONDS, topk: int = 5, device="cpu", title: Optional[str] = None):
    """The page (a ``gradio.Blocks``) for a ``VideoClassifier`` with one head: an upload (analysed
    as soon as it arrives) and, with ``examples`` (a folder), a list of its videos by name."""
    gr = require_gradio()
    if len(clf.heads) != 1:
        raise ValueError(f"the page shows one classifier head; {clf.name} has {len(clf.heads)}")
    if not (max_upload_mb > 0 and max_seconds > 0 and topk > 0):
        raise ValueError("max_upload_mb, max_seconds and topk must be positive")
    shown = find_examples(examples)
    limits = (max_upload_mb, max_seconds)
    title = title or f"tada-zoo: {clf.name}"

    def on_upload(path):
        if path is None:
            return gr.update(), gr.update(), gr.update()
        return _answer(gr, clf, path, limits, topk, device, delete=True)

    def on_example(name):
        if name not in shown:  # a name from the list only, never a path
            raise _page_error(gr, "pick one of the listed examples")
        return _answer(gr, clf, str(shown[name]), limits, topk, device, delete=False)

    with gr.Blocks(title=title, analytics_enabled=False, **_themed(gr, "blocks")) as demo:
        gr.Markdown(f"# {html.escape(title)}\nUpload a video (up to {max_upload_mb:g} MB and {max_seconds:g} s)"
                    + (" or pick an example" if shown else "") + f": the top-{topk} classes of {clf.name}, "
                    "where it looks (Grad-CAM of the top class) and TAdaConv's calibration weights alpha_t.")
        with gr.Row():
            with gr.Column():
                video = gr.Video(sources=["upload"], format=None, label="video")  # format None: no conversion
                # any value reaches on_example, which looks it up in the list (and logs one line, not a traceback)
                example = gr.Dropdown(choices=list(shown), value=None, label="or an example",
                                      visible=bool(shown), allow_custom_value=True)
            with gr.Column():
                label = gr.Label(num_top_classes=topk, label=f"top-{topk}")
                status = gr.Markdown(elem_id="status")
        pictures = gr.HTML(elem_id="pictures")
        outputs = [label, status, pictures]
        # the answered upload is deleted: its player is emptied, so it does not fetch the file again
        video.upload(on_upload, video, outputs, api_name="classify", concurrency_limit=1).then(
            lambda: None, None, video, api_name=False, queue=False)
        example.input(on_example, example, outputs, api_name="example", concurrency_limit=1)
    return demo


@contextmanager
def running_app(clf, host: str = "127.0.0.1", port: int = 7860, examples: Optional[PathLike] = None,
                max_upload_mb: float = MAX_UPLOAD_MB, max_seconds: float = MAX_SECONDS, device="cpu",
                blocked: Sequence[PathLike] = ()) -> Iterator[str]:
    """Serve ``build_app(clf)`` on ``host:port`` while the block runs; yields its URL. Uploads go to a
    private temporary folder (Gradio's only created path), removed with everything in it on exit."""
    require_gradio()
    tmp = tempfile.mkdtemp(prefix="tada-zoo-serve-")
    env = dict(GRADIO_TEMP_DIR=os.path.join(tmp, "uploads"), GRADIO_EXAMPLES_CACHE=os.path.join(tmp, "cache"),
               GRADIO_ANALYTICS_ENABLED="False")
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    demo = None
    try:
        demo = build_app(clf, examples, max_upload_mb, max_seconds, device=device)
        demo.launch(server_name=host, server_port=port, prevent_thread_lock=True, quiet=True, share=False,
                    inbrowser=False, **launch_options(max_upload_mb, blocked))
        yield f"http://{f'[{host}]' if ':' in host else host}:{port}/"
    finally:
        if demo is not None:
            demo.close()
        shutil.rmtree(tmp, ignore_errors=True)
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


_SPACE_APP = """\"\"\"Try {repo} in the browser: the page of `tada-zoo serve` (written by `tada-zoo push --with-app`).

`python app.py` next to the model's files (pip install -r requirements.txt), or as a Hugging Face Space.
\"\"\"
import os

from tada_zoo import VideoClassifier
from tada_zoo.deploy.app import build_app, launch_options

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = {repo!r}
# the weights next to this file (a clone of the repo, or a Space holding its files), else the model repo's
SOURCE = f"local-dir:{{HERE}}" if os.path.isfile(os.path.join(HERE, "model.safetensors")) else f"hf-hub:{{REPO}}"

demo = build_app(VideoClassifier.from_pretrained(SOURCE))

if __name__ == "__main__":
    demo.launch(**launch_options())
"""


def space_files(repo: str) -> Dict[str, str]:
    """``{file name: text}`` of a Gradio app for the model repo ``repo``: ``app.py`` builds this page for
    the weights next to it, else for ``hf-hub:repo``; ``requirements.txt`` installs tada-zoo with gradio."""
    from tada_zoo import __version__

    requirements = ("# tada-zoo from PyPI; until it is published there, replace the line with\n"
                    "# tada-zoo[serve] @ git+https://<the tada-zoo repository>\n"
                    f"tada-zoo[serve]>={__version__}\n")
    return {"app.py": _SPACE_APP.format(repo=repo), "requirements.txt": requirements}
