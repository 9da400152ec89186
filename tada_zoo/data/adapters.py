"""Annotation lists from the public dataset formats and from class folders (``tada-zoo make-list``).

Every adapter writes ``relative/path label`` lines (``path verb noun`` for EPIC-KITCHENS)
atomically and returns the class names, index = label. Paths are built from a
``path_template`` (``str.format`` fields named per adapter) so they match however the
videos were downloaded; the defaults follow the common layouts.
"""
import csv
import io
import json
import os
import random
import re
import string
from typing import Dict, List, Optional, Sequence, Tuple, Union

from tada_zoo._files import write_text

from .datasets import _read_text, write_annotations
from .folders import VIDEO_EXTENSIONS, find_videos

__all__ = ["kinetics_csv_to_list", "ssv2_json_to_list", "ucf101_to_list", "hmdb51_to_list",
           "epic100_csv_to_list", "read_class_names", "scan_class_folders", "split_class_folders",
           "class_folders_to_lists"]


KINETICS_TEMPLATE = "{label}/{youtube_id}_{time_start:06d}_{time_end:06d}.mp4"
SSV2_TEMPLATE = "{id}.webm"
EPIC100_TEMPLATE = "{participant_id}/{narration_id}.mp4"

PathLike = Union[str, os.PathLike]


def read_class_names(path: PathLike) -> List[str]:
    """Class names, one per line (line i = class i)."""
    return [line for line in _read_text(path, "class-name file").split("\n") if line.strip()]


def _read_csv(path: PathLike, need: Sequence[str], kind: str) -> List[Tuple[int, Dict[str, str]]]:
    """``[(line, row)]`` of a CSV with a header; a row whose field count differs from the
    header's is an error here (a short row would otherwise crash later without a line)."""
    reader = csv.reader(io.StringIO(_read_text(path, "annotation CSV")))
    try:
        header = next(reader, [])
    except csv.Error as e:
        raise ValueError(f"{path}:1: not valid CSV ({e})") from None
    missing = [c for c in need if c not in header]
    if missing:
        raise ValueError(f"{path}: no {', '.join(map(repr, missing))} column; is this the {kind} CSV? "
                         f"(its header: {','.join(header)})")
    rows = []
    try:
        for fields in reader:
            if not fields:
                continue  # blank line
            if len(fields) < len(header) or any(f.strip() for f in fields[len(header):]):
                raise ValueError(f"{path}:{reader.line_num}: {len(fields)} fields, but the header has "
                                 f"{len(header)} ({','.join(header)}); is the row cut short, or a field with a "
                                 "comma unquoted?")
            rows.append((reader.line_num, dict(zip(header, fields))))
    except csv.Error as e:
        raise ValueError(f"{path}:{reader.line_num}: not valid CSV ({e})") from None
    return rows


def _read_json(path: PathLike):
    try:
        return json.loads(_read_text(path, "JSON file"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: not valid JSON ({e.msg} at column {e.colno})") from None


def _field(where: str, row: Dict[str, str], name: str) -> str:
    value = row[name]
    if not value.strip():
        raise ValueError(f"{where}: empty '{name}'")
    return value


def _number(where: str, row: Dict[str, str], name: str, parse=int):
    value = _field(where, row, name)
    try:
        return parse(value)
    except (ValueError, OverflowError):
        raise ValueError(f"{where}: '{name}' must be a number, got {value!r}") from None


def _format(template: str, fields: dict, where: str) -> str:
    """``template.format(**fields)``; a field the template uses must not be empty (it would
    name another file), and an unknown field is a ValueError that lists the known ones."""
    for _, name, _, _ in string.Formatter().parse(template):
        name = re.split(r"[.\[]", name or "")[0]
        if name in fields and not str(fields[name]).strip():
            raise ValueError(f"{where}: empty '{name}' (used by path_template {template!r})")
    try:
        return template.format(**fields)
    except KeyError as e:
        raise ValueError(f"path_template {template!r} uses the unknown field {e}; available: "
                         f"{', '.join(sorted(fields))}") from None
    except IndexError:
        raise ValueError(f"path_template {template!r}: use named fields ({{name}}); available: "
                         f"{', '.join(sorted(fields))}") from None
    except ValueError as e:
        raise ValueError(f"{where}: path_template {template!r}: {e}") from None


def _finish(samples, output, class_names, class_names_out, data_root=None, drop_missing=False, source=None):
    if not samples:
        raise ValueError(f"no samples found in {source or 'the input annotation files'}")
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
            write_text(class_names_out, json.dumps(class_names, indent=1) + "\n")
        else:
            write_text(class_names_out, "".join(f"{c}\n" for c in class_names))
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
    ``youtube_id``, ``time_start``, ``time_end`` (ints), ``split`` (and any other column);
    ``label_spaces`` replaces spaces in the label's folder name (e.g. ``"_"``).
    """
    rows = []
    for line, r in _read_csv(csv_file, ("label", "youtube_id", "time_start", "time_end"), "Kinetics"):
        where = f"{csv_file}:{line}"
        label, youtube_id = _field(where, r, "label"), _field(where, r, "youtube_id")
        times = [_number(where, r, name, lambda v: int(float(v))) for name in ("time_start", "time_end")]
        rows.append((where, label, dict(r, youtube_id=youtube_id, time_start=times[0], time_end=times[1])))
    if class_names is None:
        class_names = sorted({label for _, label, _ in rows})
    elif not isinstance(class_names, (list, tuple)):
        class_names = read_class_names(class_names)
    index = _class_index(class_names)
    samples = []
    for where, label, fields in rows:
        if label not in index:
            raise ValueError(f"{where}: label {label!r} is not among the {len(class_names)} classes")
        fields["label"] = label if label_spaces is None else label.replace(" ", label_spaces)
        fields.setdefault("split", "")
        samples.append((_format(path_template, fields, where), index[label]))
    return _finish(samples, output, list(class_names), class_names_out, data_root, drop_missing, csv_file)


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
    labels = _read_json(labels_json)
    if not isinstance(labels, dict):
        raise ValueError(f"{labels_json}: expected an object {{\"class name\": \"index\"}}; is this the labels JSON?")
    try:
        labels = {k: int(v) for k, v in labels.items()}
    except (TypeError, ValueError):
        raise ValueError(f"{labels_json}: class indices must be integers") from None
    if sorted(labels.values()) != list(range(len(labels))):
        raise ValueError(f"{labels_json}: class indices must be 0..{len(labels) - 1}, each once")
    class_names = [None] * len(labels)
    for name, i in labels.items():
        class_names[i] = name
    entries = _read_json(annotations_json)
    if not isinstance(entries, list):
        raise ValueError(f"{annotations_json}: expected a list of videos; is this the train or validation JSON?")
    samples = []
    for k, e in enumerate(entries):
        if not isinstance(e, dict) or "id" not in e:
            raise ValueError(f"{annotations_json}: entry {k} has no 'id'")
        if not str(e["id"]).strip():
            raise ValueError(f"{annotations_json}: entry {k} has an empty 'id'")
        if "template" not in e:
            raise ValueError(f"{annotations_json}: entry {k} (video {e['id']}) has no 'template' (the test split "
                             "has no labels; use the train or validation JSON)")
        name = ssv2_label_of(e)
        if name not in labels:
            raise ValueError(f"{annotations_json}: class {name!r} of video {e['id']} is not in {labels_json}")
        samples.append((_format(path_template, {"id": e["id"]}, f"{annotations_json}: entry {k}"), labels[name]))
    return _finish(samples, output, class_names, class_names_out, data_root, drop_missing, annotations_json)


def ucf101_to_list(class_ind: PathLike, split_file: PathLike, output: PathLike,
                   class_names_out: Optional[PathLike] = None, *, path_template: str = "{path}",
                   data_root: Optional[PathLike] = None, drop_missing: bool = False) -> List[str]:
    """UCF101: ``classInd.txt`` (``1 ApplyEyeMakeup``) + ``trainlistNN.txt`` (``Class/v_x.avi 1``,
    1-based) or ``testlistNN.txt`` (``Class/v_x.avi``, class from the folder). Labels become
    0-based. Template field: ``path`` (as in the split file)."""
    ids = []
    for n, line in enumerate(_read_text(class_ind, "class index file").split("\n"), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or not fields[0].isdigit():
            raise ValueError(f"{class_ind}:{n}: expected 'index ClassName' (e.g. '1 ApplyEyeMakeup'), got {line!r}")
        ids.append((int(fields[0]), fields[1]))
    if not ids:
        raise ValueError(f"{class_ind} lists no classes; is this classInd.txt?")
    ids.sort()
    class_names = [name for _, name in ids]
    index = _class_index(class_names)
    by_id = {i: label for label, (i, _) in enumerate(ids)}
    samples = []
    for n, line in enumerate(_read_text(split_file, "split file").split("\n"), 1):
        fields = line.split()
        if not fields:
            continue
        path = fields[0]
        if len(fields) > 1:
            if not fields[1].isdigit() or int(fields[1]) not in by_id:
                raise ValueError(f"{split_file}:{n}: class id {fields[1]} is not in {class_ind} "
                                 f"(ids {ids[0][0]}..{ids[-1][0]})")
            label = by_id[int(fields[1])]
        else:
            folder = path.split("/")[0]
            if folder not in index:
                raise ValueError(f"{split_file}:{n}: class folder {folder!r} is not in {class_ind}")
            label = index[folder]
        samples.append((_format(path_template, {"path": path}, f"{split_file}:{n}"), label))
    return _finish(samples, output, class_names, class_names_out, data_root, drop_missing, split_file)


_HMDB_SPLIT = re.compile(r"^(.+)_test_split(\d)\.txt$")


def hmdb51_to_list(splits_dir: PathLike, output: PathLike, class_names_out: Optional[PathLike] = None, *,
                   split: int = 1, subset: str = "train", path_template: str = "{label}/{video}",
                   data_root: Optional[PathLike] = None, drop_missing: bool = False) -> List[str]:
    """HMDB51: the ``<class>_test_split<k>.txt`` files (``video.avi 1|2|0``: 1 train, 2 test,
    0 unused). Classes sorted by name. Template fields: ``label`` (class folder), ``video``."""
    code = {"train": "1", "test": "2"}.get(subset)
    if code is None:
        raise ValueError(f"subset must be 'train' or 'test', got {subset!r}")
    if os.path.exists(splits_dir) and not os.path.isdir(splits_dir):
        raise ValueError(f"{splits_dir} is not a folder; pass the folder of <class>_test_split<k>.txt files")
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
        for n, line in enumerate(_read_text(files[name], "split file").split("\n"), 1):
            fields = line.split()
            if len(fields) == 2 and fields[1] == code:
                samples.append((_format(path_template, {"label": name, "video": fields[0]}, f"{files[name]}:{n}"),
                                label))
    return _finish(samples, output, class_names, class_names_out, data_root, drop_missing,
                   f"the {subset} samples of split {split} in {splits_dir}")


def epic100_csv_to_list(csv_file: PathLike, output: PathLike, class_names_out: Optional[PathLike] = None, *,
                        heads: Sequence[str] = ("verb", "noun"), path_template: str = EPIC100_TEMPLATE,
                        data_root: Optional[PathLike] = None, drop_missing: bool = False):
    """EPIC-KITCHENS-100 ``EPIC_100_train.csv`` / ``_validation.csv`` -> ``path verb noun`` lines.

    Videos are the trimmed action segments (one file per narration). ``heads`` picks the
    label columns (``("verb",)`` for a verb-only list). Returns ``{head: [names]}`` (names
    seen in this file; unseen class ids get ``""``); ``class_names_out`` is written as JSON.
    Template fields: every CSV column (``participant_id``, ``video_id``, ``narration_id``, ...).
    """
    for h in heads:
        if h not in ("verb", "noun"):
            raise ValueError(f"heads must be among ('verb', 'noun'), got {h!r}")
    rows = _read_csv(csv_file, [f"{h}_class" for h in heads], "EPIC-KITCHENS-100 action")
    names: Dict[str, Dict[int, str]] = {h: {} for h in heads}
    samples = []
    for line, r in rows:
        where = f"{csv_file}:{line}"
        labels = tuple(_number(where, r, f"{h}_class") for h in heads)
        for h, c in zip(heads, labels):
            names[h].setdefault(c, r.get(h, ""))
        samples.append((_format(path_template, r, where), labels if len(labels) > 1 else labels[0]))
    class_names = {h: [d.get(i, "") for i in range(max(d) + 1)] if d else [] for h, d in names.items()}
    return _finish(samples, output, class_names, class_names_out, data_root, drop_missing, csv_file)


def scan_class_folders(root: PathLike) -> Tuple[List[str], List[Tuple[str, int]]]:
    """``(class_names, [(class/relative/path, label)])`` of an ImageFolder-style video tree
    ``root/<class>/**/<video>``: classes are the sub-folder names sorted (the order pytorchvideo
    and torchvision's ImageFolder use), videos found recursively, extensions compared
    case-insensitively by the one walker (``folders.find_videos``: hidden entries and non-videos skipped).
    A class folder without videos is an error (its label would never be seen)."""
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"{root} is not a folder of class folders (videos/<class>/<video>)")
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise ValueError(f"{root} has no class folders; expected {root}/<class>/<video> (one folder per class)")
    odd = [c for c in classes if c != c.strip() or "\n" in c or "\r" in c]
    if odd:
        raise ValueError(f"class folder names must not start or end with spaces or hold line breaks (they are "
                         f"written one per line to classes.txt): {odd[0]!r} under {root}")
    samples, empty = [], []
    for label, name in enumerate(classes):
        found = [os.path.relpath(p, root).replace(os.sep, "/") for p in find_videos(os.path.join(root, name))]
        if not found:
            empty.append(name)
        samples += [(path, label) for path in found]
    if empty:
        raise ValueError(f"{len(empty)} class folder{'s' * (len(empty) > 1)} under {root} hold no videos "
                         f"({', '.join(VIDEO_EXTENSIONS[:4])}, ...): {', '.join(empty[:5])}"
                         f"{' ...' if len(empty) > 5 else ''}; add videos or remove the folder")
    return classes, samples


def _check_fraction(val_fraction: float) -> float:
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be a number strictly between 0 and 1, got {val_fraction!r}")
    return float(val_fraction)


def split_class_folders(root: PathLike, val_fraction: float = 0.2, seed: int = 0):
    """``(class_names, train, val)`` of ``scan_class_folders(root)``, split per class (stratified):
    each class with n >= 2 videos puts ``round(n * val_fraction)`` of them (at least 1, at most
    n - 1) in ``val``, chosen by a ``seed``-ed shuffle, so the split depends only on the files,
    the fraction and the seed. A class with one video stays in ``train``."""
    val_fraction = _check_fraction(val_fraction)
    classes, samples = scan_class_folders(root)
    rng = random.Random(seed)
    train, val = [], []
    for label in range(len(classes)):
        mine = [s for s in samples if s[1] == label]
        rng.shuffle(mine)
        n_val = min(max(1, round(len(mine) * val_fraction)), len(mine) - 1)
        val += mine[:n_val]
        train += mine[n_val:]
    if not val:
        raise ValueError(f"no validation videos: every class under {root} has a single video; "
                         "a split needs at least 2 videos in some class")
    return classes, sorted(train), sorted(val)


def class_folders_to_lists(root: PathLike, output_dir: PathLike, val_fraction: float = 0.2,
                           seed: int = 0) -> List[str]:
    """Write ``train.txt``, ``val.txt`` (paths relative to ``root``) and ``classes.txt`` (line i
    = class i) into ``output_dir``, each atomically, from ``split_class_folders``; returns the
    class names."""
    classes, train, val = split_class_folders(root, val_fraction, seed)
    out = os.fspath(output_dir)
    write_annotations(train, os.path.join(out, "train.txt"))
    write_annotations(val, os.path.join(out, "val.txt"))
    write_text(os.path.join(out, "classes.txt"), "".join(f"{c}\n" for c in classes))
    return classes
