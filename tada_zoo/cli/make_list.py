"""``tada-zoo make-list``: an annotation list (path label) from a public dataset's annotation files,
or train / val lists and classes.txt from a folder of class folders."""
import argparse
import os

from tada_zoo.data.adapters import (class_folders_to_lists, epic100_csv_to_list, hmdb51_to_list, kinetics_csv_to_list,
                                    ssv2_json_to_list, ucf101_to_list)

from ._args import HelpFormatter, open_fraction

__all__ = ["register"]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "make-list", help="write annotation lists (path label) from a dataset's files or from class folders",
        formatter_class=HelpFormatter,
        description="Write an annotation list 'relative/path label' from Kinetics CSV, SSV2 JSON, "
                    "UCF101 / HMDB51 split files or EPIC-KITCHENS-100 CSV; or, with --format folder, "
                    "train.txt, val.txt and classes.txt from ROOT/<class>/<video> (classes sorted by name, "
                    "a seeded split of each class).")
    p.add_argument("--format", required=True, choices=["kinetics", "ssv2", "ucf101", "hmdb51", "epic100", "folder"],
                   help="input format; folder: a folder of class folders")
    p.add_argument("--output", default=None, help="annotation list to write (every format but folder)")
    p.add_argument("--root", default=None, help="folder: the folder of class folders (list paths are relative to it)")
    p.add_argument("--output-dir", default=None, help="folder: where train.txt, val.txt and classes.txt go")
    p.add_argument("--val-fraction", type=open_fraction, default=0.2,
                   help="folder: share of each class's videos in val.txt")
    p.add_argument("--seed", type=int, default=0, help="folder: seed of the train / val split")
    p.add_argument("--class-names-out", default=None, help="also write the class names (one per line; JSON for epic100)")
    p.add_argument("--csv", help="kinetics / epic100: the annotation CSV")
    p.add_argument("--class-names", help="kinetics: fix the class order with this file (e.g. from the train split)")
    p.add_argument("--label-spaces", default=None, help="kinetics: replace spaces in class folder names with this")
    p.add_argument("--labels-json", help="ssv2: something-something-v2-labels.json")
    p.add_argument("--json", help="ssv2: something-something-v2-train.json or -validation.json")
    p.add_argument("--class-ind", help="ucf101: classInd.txt")
    p.add_argument("--split-file", help="ucf101: trainlistNN.txt or testlistNN.txt")
    p.add_argument("--splits-dir", help="hmdb51: folder of <class>_test_split<k>.txt files")
    p.add_argument("--split", type=int, default=1, help="hmdb51: split number")
    p.add_argument("--subset", default="train", choices=["train", "test"], help="hmdb51: subset")
    p.add_argument("--heads", default="verb,noun", help="epic100: label columns")
    p.add_argument("--path-template", default=None,
                   help="str.format template of the video path (see docs/data.md; default: the format's usual layout)")
    p.add_argument("--data-root", default=None, help="check that the videos exist under this folder")
    p.add_argument("--drop-missing", action="store_true", help="with --data-root: drop missing videos instead of failing")
    p.set_defaults(func=_main)


def _require(args, *names):
    missing = [f"--{n.replace('_', '-')}" for n in names if getattr(args, n) is None]
    if missing:
        raise ValueError(f"--format {args.format} needs {' '.join(missing)}")


def _main(args: argparse.Namespace) -> None:
    if args.format == "folder":
        _require(args, "root", "output_dir")
        names = class_folders_to_lists(args.root, args.output_dir, args.val_fraction, args.seed)
        counts = []
        for split in ("train", "val"):
            with open(os.path.join(args.output_dir, f"{split}.txt"), encoding="utf-8") as f:
                counts.append(sum(1 for line in f if line.strip()))
        print(f"wrote {os.path.join(args.output_dir, '')}{{train,val,classes}}.txt: {counts[0]} training / {counts[1]} "
              f"validation videos, {len(names)} classes (val fraction {args.val_fraction:g}, seed {args.seed})")
        return
    _require(args, "output")
    common = dict(data_root=args.data_root, drop_missing=args.drop_missing)
    if args.path_template is not None:
        common["path_template"] = args.path_template
    if args.format == "kinetics":
        _require(args, "csv")
        names = kinetics_csv_to_list(args.csv, args.output, args.class_names_out, class_names=args.class_names,
                                     label_spaces=args.label_spaces, **common)
    elif args.format == "ssv2":
        _require(args, "labels_json", "json")
        names = ssv2_json_to_list(args.labels_json, args.json, args.output, args.class_names_out, **common)
    elif args.format == "ucf101":
        _require(args, "class_ind", "split_file")
        names = ucf101_to_list(args.class_ind, args.split_file, args.output, args.class_names_out, **common)
    elif args.format == "hmdb51":
        _require(args, "splits_dir")
        names = hmdb51_to_list(args.splits_dir, args.output, args.class_names_out, split=args.split,
                               subset=args.subset, **common)
    else:
        _require(args, "csv")
        names = epic100_csv_to_list(args.csv, args.output, args.class_names_out,
                                    heads=tuple(h.strip() for h in args.heads.split(",") if h.strip()), **common)
    with open(args.output, encoding="utf-8") as f:
        n = sum(1 for line in f if line.strip())
    sizes = ", ".join(f"{len(v)} {k} classes" for k, v in names.items()) if isinstance(names, dict) \
        else f"{len(names)} classes"
    print(f"wrote {args.output}: {n} samples, {sizes}")
