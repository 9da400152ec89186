"""Annotation lists from the public dataset formats, and the ``tada-zoo make-list`` command.

Every adapter writes ``relative/path label`` lines (``path verb noun`` for EPIC-KITCHENS)
atomically and returns the class names, index = label. Paths are built from a
``path_template`` (``str.format`` fields named per adapter) so they match however the
videos were downloaded; the defaults follow the common layouts.
"""
import csv
import json
import os
import re
from typing import Dict, List, Optional, Sequence, Union

from .datasets import write_annotations

__all__ = ["kinetics_csv_to_list", "ssv2_json_to_list", "ucf101_to_list", "hmdb51_to_list",
           "epic100_csv_to_list", "read_class_names"]

KINETICS_TEMPLATE = "{label}/{youtube_id}_{time_start:06d}_{time_end:06d}.mp4"
SSV2_TEMPLATE = "{id}.webm"
EPIC100_TEMPLATE = "{participant_id}/{narration_id}.mp4"

PathLike = Union[str, os.PathLike]


def read_class_names(path: PathLike) -> List[str]:
    """Class names, one per line (line i = class i)."""
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def _write_text(path: PathLike, text: str) -> None:
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def _finish(samples, output, class_names, class_names_out, data_root=None, drop_missing=False):
    if not samples:
        raise ValueError("no samples found in the input annotation files")
    if data_root is not None:
        missing = [p for p, _ in samples if not os.path.isfile(os.path.join(data_root, p))]
        if missing:
            if not drop_missing:
                raise FileNotFoundError(
                    f"{len(missing)} of {len(samples)} videos are missing under {data_root}; first ones: "
                    f"{missing[:5]} (check path_template, or drop them with drop_missing / --drop-missing)")
            print(f"dropped {len(missing)} of {len(samples)} samples whose videos are missing under {data_root}")
            gone = set(missing)
            samples = [s for s in samples if s[0] not in gone]
    write_annotations(samples, output)
    if class_names_out is not None:
        if isinstance(class_names, dict):
            _write_text(class_names_out, json.dumps(class_names, indent=1) + "\n")
        else:
            _write_text(class_names_out, "".join(f"{c}\n" for c in class_names))
    return class_names


def _class_index(names: Sequence[str]) -> Dict[str, int]:
    return {n: i for i, n in enumerate(names)}


def kinetics_csv_to_list(csv_file: PathLike, output: PathLike, class_names_out: Optional[PathLike] = None, *,
                         class_names: Optional[Union[PathLike, Sequence[str]]] = None,
                         path_template: str = KINETICS_TEMPLATE, label_spaces: Optional[str] = None,
                         data_root: Optional[PathLike] = None, drop_missing: bool = False) -> List[str]:
    """Kinetics CSV (``label,youtube_id,time_start,time_end,split``) -> list.

    Classes are the sorted label names (the usual Kinetics indexing) unless ``class_names``
    (a list or a file, e.g. the train split's) fixes them. Template fields: ``label``,
    ``youtube_id``, ``time_start``, ``time_end`` (ints), ``split``; ``label_spaces`` replaces
    spaces in the label's folder name (e.g. ``"_"``).
    """
    with open(csv_file, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    need = {"label", "youtube_id", "time_start", "time_end"}
    if rows and not need <= set(rows[0]):
        raise ValueError(f"{csv_file}: expected Kinetics columns {sorted(need)}, got {sorted(rows[0])}")
    if class_names is None:
        class_names = sorted({r["label"] for r in rows})
    elif not isinstance(class_names, (list, tuple)):
        class_names = read_class_names(class_names)
    index = _class_index(class_names)
    samples = []
    for n, r in enumerate(rows, 2):
        if r["label"] not in index:
            raise ValueError(f"{csv_file}:{n}: label {r['label']!r} is not among the {len(class_names)} classes")
        folder = r["label"] if label_spaces is None else r["label"].replace(" ", label_spaces)
        path = path_template.format(label=folder, youtube_id=r["youtube_id"], split=r.get("split", ""),
                                    time_start=int(float(r["time_start"])), time_end=int(float(r["time_end"])))
        samples.append((path, index[r["label"]]))
    return _finish(samples, output, list(class_names), class_names_out, data_root, drop_missing)


def ssv2_label_of(entry: dict) -> str:
    """Class name of an SSV2 annotation: the template without its ``[...]`` brackets."""
    return entry["template"].replace("[", "").replace("]", "")


def ssv2_json_to_list(labels_json: PathLike, annotations_json: PathLike, output: PathLike,
                      class_names_out: Optional[PathLike] = None, *, path_template: str = SSV2_TEMPLATE,
                      data_root: Optional[PathLike] = None, drop_missing: bool = False) -> List[str]:
    """Something-Something V2: ``something-something-v2-labels.json`` (``{"name": "idx"}``)
    plus the train or validation JSON (``[{"id", "label", "template", "placeholders"}]``).

    The class is the template with brackets removed (``label`` has the objects filled in).
    Template field: ``id``.
    """
    with open(labels_json, encoding="utf-8") as f:
        labels = {k: int(v) for k, v in json.load(f).items()}
    class_names = [None] * len(labels)
    for name, i in labels.items():
        class_names[i] = name
    with open(annotations_json, encoding="utf-8") as f:
        entries = json.load(f)
    samples = []
    for e in entries:
        if "template" not in e:
            raise ValueError(f"{annotations_json}: entry {e.get('id')} has no 'template' (the test split has "
                             "no labels; use the train or validation JSON)")
        name = ssv2_label_of(e)
        if name not in labels:
            raise ValueError(f"{annotations_json}: class {name!r} of video {e['id']} is not in {labels_json}")
        samples.append((path_template.format(id=e["id"]), labels[name]))
    return _finish(samples, output, class_names, class_names_out, data_root, drop_missing)


def ucf101_to_list(class_ind: PathLike, split_file: PathLike, output: PathLike,
                   class_names_out: Optional[PathLike] = None, *, path_template: str = "{path}",
                   data_root: Optional[PathLike] = None, drop_missing: bool = False) -> List[str]:
    """UCF101: ``classInd.txt`` (``1 ApplyEyeMakeup``) + ``trainlistNN.txt`` (``Class/v_x.avi 1``,
    1-based) or ``testlistNN.txt`` (``Class/v_x.avi``, class from the folder). Labels become
    0-based. Template field: ``path`` (as in the split file)."""
    ids = []
    with open(class_ind, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                i, name = line.split()
                ids.append((int(i), name))
    class_names = [name for _, name in sorted(ids)]
    index = _class_index(class_names)
    samples = []
    with open(split_file, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            path = fields[0]
            if len(fields) > 1:
                label = int(fields[1]) - 1
            else:
                folder = path.split("/")[0]
                if folder not in index:
                    raise ValueError(f"{split_file}:{n}: class folder {folder!r} is not in {class_ind}")
                label = index[folder]
            samples.append((path_template.format(path=path), label))
    return _finish(samples, output, class_names, class_names_out, data_root, drop_missing)


_HMDB_SPLIT = re.compile(r"^(.+)_test_split(\d)\.txt$")


def hmdb51_to_list(splits_dir: PathLike, output: PathLike, class_names_out: Optional[PathLike] = None, *,
                   split: int = 1, subset: str = "train", path_template: str = "{label}/{video}",
                   data_root: Optional[PathLike] = None, drop_missing: bool = False) -> List[str]:
    """HMDB51: the ``<class>_test_split<k>.txt`` files (``video.avi 1|2|0``: 1 train, 2 test,
    0 unused). Classes sorted by name. Template fields: ``label`` (class folder), ``video``."""
    code = {"train": "1", "test": "2"}.get(subset)
    if code is None:
        raise ValueError(f"subset must be 'train' or 'test', got {subset!r}")
    files, classes = {}, set()
    for name in os.listdir(splits_dir):
        m = _HMDB_SPLIT.match(name)
        if m:
            classes.add(m.group(1))  # class ids come from every split, so they agree across splits
            if int(m.group(2)) == split:
                files[m.group(1)] = os.path.join(splits_dir, name)
    if not files:
        raise FileNotFoundError(f"no '<class>_test_split{split}.txt' files in {splits_dir}")
    class_names = sorted(classes)
    samples = []
    for label, name in enumerate(class_names):
        if name not in files:
            continue
        with open(files[name], encoding="utf-8") as f:
            for line in f:
                fields = line.split()
                if len(fields) == 2 and fields[1] == code:
                    samples.append((path_template.format(label=name, video=fields[0]), label))
    return _finish(samples, output, class_names, class_names_out, data_root, drop_missing)


def epic100_csv_to_list(csv_file: PathLike, output: PathLike, class_names_out: Optional[PathLike] = None, *,
                        heads: Sequence[str] = ("verb", "noun"), path_template: str = EPIC100_TEMPLATE,
                        data_root: Optional[PathLike] = None, drop_missing: bool = False):
    """EPIC-KITCHENS-100 ``EPIC_100_train.csv`` / ``_validation.csv`` -> ``path verb noun`` lines.

    Videos are the trimmed action segments (one file per narration). ``heads`` picks the
    label columns (``("verb",)`` for a verb-only list). Returns ``{head: [names]}`` (names
    seen in this file; unseen class ids get ``""``); ``class_names_out`` is written as JSON.
    Template fields: every CSV column (``participant_id``, ``video_id``, ``narration_id``, ...).
    """
    with open(csv_file, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for h in heads:
        if h not in ("verb", "noun"):
            raise ValueError(f"heads must be among ('verb', 'noun'), got {h!r}")
        if rows and f"{h}_class" not in rows[0]:
            raise ValueError(f"{csv_file}: no '{h}_class' column; is this an EPIC-KITCHENS-100 action CSV?")
    names: Dict[str, Dict[int, str]] = {h: {} for h in heads}
    samples = []
    for r in rows:
        labels = tuple(int(r[f"{h}_class"]) for h in heads)
        for h, c in zip(heads, labels):
            names[h].setdefault(c, r[h])
        samples.append((path_template.format(**r), labels if len(labels) > 1 else labels[0]))
    class_names = {h: [d.get(i, "") for i in range(max(d) + 1)] if d else [] for h, d in names.items()}
    return _finish(samples, output, class_names, class_names_out, data_root, drop_missing)
