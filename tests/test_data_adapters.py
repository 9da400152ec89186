"""Adapters on small files in the public formats of each dataset."""
import csv
import json

import pytest

from tada_zoo.data import (epic100_csv_to_list, hmdb51_to_list, kinetics_csv_to_list, read_annotations,
                           ssv2_json_to_list, ucf101_to_list)
from tada_zoo.data.adapters import read_class_names


def test_kinetics_csv(tmp_path):
    (tmp_path / "train.csv").write_text(
        "label,youtube_id,time_start,time_end,split\n"
        "air drumming,--33Lscn6sk,4,14,train\n"
        "abseiling,--07WQ2iBlw,1,11,train\n"
        "abseiling,-3B32lodo2M,59,69,train\n")
    names = kinetics_csv_to_list(tmp_path / "train.csv", tmp_path / "train.txt", tmp_path / "classes.txt")
    assert names == ["abseiling", "air drumming"] == read_class_names(tmp_path / "classes.txt")
    assert read_annotations(tmp_path / "train.txt") == [
        ("air drumming/--33Lscn6sk_000004_000014.mp4", 1),
        ("abseiling/--07WQ2iBlw_000001_000011.mp4", 0),
        ("abseiling/-3B32lodo2M_000059_000069.mp4", 0)]
    # a val split with fewer classes keeps the train split's indices
    (tmp_path / "val.csv").write_text("label,youtube_id,time_start,time_end,split\n"
                                      "air drumming,abc,0,10,val\n")
    kinetics_csv_to_list(tmp_path / "val.csv", tmp_path / "val.txt", class_names=tmp_path / "classes.txt",
                         path_template="{split}/{youtube_id}.mp4")
    assert read_annotations(tmp_path / "val.txt") == [("val/abc.mp4", 1)]
    kinetics_csv_to_list(tmp_path / "val.csv", tmp_path / "val2.txt", label_spaces="_")
    assert read_annotations(tmp_path / "val2.txt")[0][0].startswith("air_drumming/")


def test_kinetics_missing_videos(tmp_path):
    (tmp_path / "k.csv").write_text("label,youtube_id,time_start,time_end,split\na,x,0,10,train\na,y,0,10,train\n")
    (tmp_path / "videos" / "a").mkdir(parents=True)
    (tmp_path / "videos" / "a" / "x_000000_000010.mp4").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="1 of 2 videos"):
        kinetics_csv_to_list(tmp_path / "k.csv", tmp_path / "k.txt", data_root=tmp_path / "videos")
    kinetics_csv_to_list(tmp_path / "k.csv", tmp_path / "k.txt", data_root=tmp_path / "videos", drop_missing=True)
    assert read_annotations(tmp_path / "k.txt") == [("a/x_000000_000010.mp4", 0)]


def _ssv2_entry(vid, template, objects):
    label = template
    for o in objects:
        label = label.replace("[something]", o, 1)
    return {"id": vid, "label": label[0].lower() + label[1:], "template": template, "placeholders": objects}


def test_ssv2_json(tmp_path):
    labels = {"Approaching something with your camera": "0",
              "Holding something next to something": "1",
              "Pushing something from left to right": "2"}
    (tmp_path / "labels.json").write_text(json.dumps(labels))
    train = [_ssv2_entry("78687", "Holding [something] next to [something]", ["potato", "vicks vaporub bottle"]),
             _ssv2_entry("42326", "Pushing [something] from left to right", ["a pen"]),
             _ssv2_entry("100904", "Approaching [something] with your camera", ["a cup"])]
    assert train[0]["label"] == "holding potato next to vicks vaporub bottle"
    (tmp_path / "train.json").write_text(json.dumps(train))
    names = ssv2_json_to_list(tmp_path / "labels.json", tmp_path / "train.json", tmp_path / "train.txt")
    assert names[1] == "Holding something next to something" and len(names) == 3
    assert read_annotations(tmp_path / "train.txt") == [("78687.webm", 1), ("42326.webm", 2), ("100904.webm", 0)]
    (tmp_path / "test.json").write_text(json.dumps([{"id": "1420"}]))
    with pytest.raises(ValueError, match="no 'template'"):
        ssv2_json_to_list(tmp_path / "labels.json", tmp_path / "test.json", tmp_path / "test.txt")


def test_ucf101_and_cli(tmp_path, capsys):
    # the official files use CRLF line ends and 1-based class ids
    (tmp_path / "classInd.txt").write_bytes(b"1 ApplyEyeMakeup\r\n2 ApplyLipstick\r\n3 Archery\r\n")
    (tmp_path / "trainlist01.txt").write_bytes(
        b"ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\r\nArchery/v_Archery_g08_c02.avi 3\r\n")
    (tmp_path / "testlist01.txt").write_bytes(
        b"ApplyLipstick/v_ApplyLipstick_g01_c01.avi\r\nApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\r\n")
    names = ucf101_to_list(tmp_path / "classInd.txt", tmp_path / "trainlist01.txt", tmp_path / "train.txt")
    assert names == ["ApplyEyeMakeup", "ApplyLipstick", "Archery"]
    assert read_annotations(tmp_path / "train.txt") == [
        ("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", 0), ("Archery/v_Archery_g08_c02.avi", 2)]
    from tada_zoo.cli import main  # in-process: a subprocess would re-import torch and timm (slow)

    rc = main(["make-list", "--format", "ucf101", "--class-ind", str(tmp_path / "classInd.txt"),
               "--split-file", str(tmp_path / "testlist01.txt"), "--output", str(tmp_path / "test.txt"),
               "--class-names-out", str(tmp_path / "classes.txt")])
    out = capsys.readouterr()
    assert rc == 0
    assert "2 samples, 3 classes" in out.out
    assert read_annotations(tmp_path / "test.txt") == [
        ("ApplyLipstick/v_ApplyLipstick_g01_c01.avi", 1), ("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi", 0)]
    assert read_class_names(tmp_path / "classes.txt") == names
    assert main(["make-list", "--format", "ucf101", "--output", str(tmp_path / "x.txt")]) == 1
    assert "needs --class-ind --split-file" in capsys.readouterr().err


def test_hmdb51_split_files(tmp_path):
    splits = tmp_path / "testTrainMulti_7030_splits"
    splits.mkdir()
    (splits / "brush_hair_test_split1.txt").write_text(
        "April_09_brush_hair_u_nm_np1_ba_goo_0.avi 1 \nAmerican_History_X_brush_hair_h_cm_np1_le_goo_8.avi 2 \n"
        "Blonde_being_brushed_brush_hair_f_nm_np2_ri_med_0.avi 0 \n")
    (splits / "fall_floor_test_split1.txt").write_text("fall_01.avi 2 \nfall_02.avi 1 \n")
    (splits / "fall_floor_test_split2.txt").write_text("fall_01.avi 1 \nfall_02.avi 2 \n")
    names = hmdb51_to_list(splits, tmp_path / "train.txt", tmp_path / "classes.txt")
    assert names == ["brush_hair", "fall_floor"]
    assert read_annotations(tmp_path / "train.txt") == [
        ("brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi", 0), ("fall_floor/fall_02.avi", 1)]
    hmdb51_to_list(splits, tmp_path / "test2.txt", split=2, subset="test")
    assert read_annotations(tmp_path / "test2.txt") == [("fall_floor/fall_02.avi", 1)]


def test_epic100_csv_verb_noun(tmp_path):
    cols = ("narration_id,participant_id,video_id,narration_timestamp,start_timestamp,stop_timestamp,"
            "start_frame,stop_frame,narration,verb,verb_class,noun,noun_class,all_nouns,all_noun_classes").split(",")
    rows = [("P01_01_0", "P01", "P01_01", "00:00:01.089", "00:00:00.14", "00:00:03.37", "8", "202",
             "open door", "open", "3", "door", "3", "['door']", "[3]"),
            ("P01_01_1", "P01", "P01_01", "00:00:02.629", "00:00:04.37", "00:00:06.17", "262", "370",
             "turn on light", "turn-on", "6", "light", "114", "['light']", "[114]"),
            ("P02_03_5", "P02", "P02_03", "00:01:02.000", "00:01:01.00", "00:01:03.50", "3660", "3810",
             "put pan and lid down", "put", "1", "pan", "5", "['pan', 'lid']", "[5, 17]")]
    with open(tmp_path / "EPIC_100_train.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        w.writerows(rows)
    names = epic100_csv_to_list(tmp_path / "EPIC_100_train.csv", tmp_path / "train.txt", tmp_path / "classes.json")
    assert read_annotations(tmp_path / "train.txt") == [
        ("P01/P01_01_0.mp4", (3, 3)), ("P01/P01_01_1.mp4", (6, 114)), ("P02/P02_03_5.mp4", (1, 5))]
    assert names["verb"][3] == "open" and names["verb"][6] == "turn-on" and len(names["verb"]) == 7
    assert names["noun"][114] == "light"
    assert json.loads((tmp_path / "classes.json").read_text()) == names
    epic100_csv_to_list(tmp_path / "EPIC_100_train.csv", tmp_path / "verb.txt", heads=("verb",),
                        path_template="{video_id}/{start_frame}_{stop_frame}.mp4")
    assert read_annotations(tmp_path / "verb.txt")[2] == ("P02_03/3660_3810.mp4", 1)


BOM = b"\xef\xbb\xbf"


def test_inputs_with_utf8_bom(tmp_path):
    """Excel and Windows editors save CSV / txt / JSON with a UTF-8 BOM."""
    (tmp_path / "k.csv").write_bytes(BOM + b"label,youtube_id,time_start,time_end,split\nabseiling,x,1,11,train\n")
    (tmp_path / "classes.txt").write_bytes(BOM + b"abseiling\nair drumming\n")
    assert read_class_names(tmp_path / "classes.txt") == ["abseiling", "air drumming"]
    kinetics_csv_to_list(tmp_path / "k.csv", tmp_path / "k.txt", class_names=tmp_path / "classes.txt")
    assert read_annotations(tmp_path / "k.txt") == [("abseiling/x_000001_000011.mp4", 0)]

    (tmp_path / "labels.json").write_bytes(BOM + json.dumps({"Pushing something": "0"}).encode())
    (tmp_path / "train.json").write_bytes(BOM + json.dumps([_ssv2_entry("7", "Pushing [something]", ["a"])]).encode())
    ssv2_json_to_list(tmp_path / "labels.json", tmp_path / "train.json", tmp_path / "s.txt")
    assert read_annotations(tmp_path / "s.txt") == [("7.webm", 0)]

    (tmp_path / "classInd.txt").write_bytes(BOM + b"1 ApplyEyeMakeup\r\n2 Archery\r\n")
    (tmp_path / "trainlist01.txt").write_bytes(BOM + b"Archery/v_Archery_g08_c02.avi 2\r\n")
    ucf101_to_list(tmp_path / "classInd.txt", tmp_path / "trainlist01.txt", tmp_path / "u.txt")
    assert read_annotations(tmp_path / "u.txt") == [("Archery/v_Archery_g08_c02.avi", 1)]

    splits = tmp_path / "splits"
    splits.mkdir()
    (splits / "fall_floor_test_split1.txt").write_bytes(BOM + b"fall_01.avi 1 \n")
    hmdb51_to_list(splits, tmp_path / "h.txt")
    assert read_annotations(tmp_path / "h.txt") == [("fall_floor/fall_01.avi", 0)]

    (tmp_path / "e.csv").write_bytes(BOM + b"narration_id,participant_id,verb,verb_class,noun,noun_class\n"
                                           b"P01_01_0,P01,open,3,door,3\n")
    epic100_csv_to_list(tmp_path / "e.csv", tmp_path / "e.txt")
    assert read_annotations(tmp_path / "e.txt") == [("P01/P01_01_0.mp4", (3, 3))]


def test_bad_rows_name_file_and_line(tmp_path):
    head = "label,youtube_id,time_start,time_end,split\n"
    cases = {"empty.csv": (head + "a,x,0,10,train\n\na,,0,10,train\n", r"empty.csv:4: empty 'youtube_id'"),
             "time.csv": (head + "a,x,,10,train\n", r"time.csv:2: empty 'time_start'"),
             "label.csv": (head + "a,x,0,10,train\n,y,0,10,train\n", r"label.csv:3: empty 'label'"),
             "short.csv": (head + "a,x,0,10,train\na,y,0\n", r"short.csv:3: 3 fields, but the header has 5"),
             "long.csv": (head + "a, b,x,0,10,train\n", r"long.csv:2: 6 fields, but the header has 5"),
             "num.csv": (head + "a,x,zero,10,train\n", r"num.csv:2: 'time_start' .*'zero'")}
    for name, (text, match) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(ValueError, match=match):
            kinetics_csv_to_list(tmp_path / name, tmp_path / "k.txt")

    (tmp_path / "e.csv").write_text("narration_id,participant_id,verb,verb_class,noun,noun_class\n"
                                    "P01_01_0,P01,open,3,door,3\nP01_01_1,P01,take,,cup,7\n")
    with pytest.raises(ValueError, match=r"e.csv:3: empty 'verb_class'"):
        epic100_csv_to_list(tmp_path / "e.csv", tmp_path / "e.txt")
    (tmp_path / "e.csv").write_text("narration_id,participant_id,verb,verb_class,noun,noun_class\n"
                                    ",P01,open,3,door,3\n")
    with pytest.raises(ValueError, match=r"e.csv:2: empty 'narration_id'"):  # a template field
        epic100_csv_to_list(tmp_path / "e.csv", tmp_path / "e.txt")
    with pytest.raises(ValueError, match=r"path_template .*'nope'.*participant_id"):
        epic100_csv_to_list(tmp_path / "e.csv", tmp_path / "e.txt", path_template="{nope}.mp4")

    (tmp_path / "classInd.txt").write_text("1 ApplyEyeMakeup\n2\n")
    with pytest.raises(ValueError, match=r"classInd.txt:2: "):
        ucf101_to_list(tmp_path / "classInd.txt", tmp_path / "classInd.txt", tmp_path / "u.txt")
    (tmp_path / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 Archery\n")
    (tmp_path / "trainlist01.txt").write_text("Archery/a.avi 2\nArchery/b.avi 3\n")
    with pytest.raises(ValueError, match=r"trainlist01.txt:2: class id 3 .*1\.\.2"):
        ucf101_to_list(tmp_path / "classInd.txt", tmp_path / "trainlist01.txt", tmp_path / "u.txt")

    (tmp_path / "labels.json").write_text(json.dumps({"Pushing something": "0"}))
    (tmp_path / "bad.json").write_text(json.dumps([{"id": "", "template": "Pushing [something]"}]))
    with pytest.raises(ValueError, match=r"bad.json: entry 0 has an empty 'id'"):
        ssv2_json_to_list(tmp_path / "labels.json", tmp_path / "bad.json", tmp_path / "s.txt")
    (tmp_path / "bad.json").write_text('[{"id": "1",\n "template": }]')
    with pytest.raises(ValueError, match=r"bad.json:2: not valid JSON"):
        ssv2_json_to_list(tmp_path / "labels.json", tmp_path / "bad.json", tmp_path / "s.txt")


def test_cli_errors_are_one_line(tmp_path, capsys):
    from tada_zoo.cli import main

    (tmp_path / "k.csv").write_text("label,youtube_id,time_start,time_end,split\na,y,0\n")
    assert main(["make-list", "--format", "kinetics", "--csv", str(tmp_path / "k.csv"),
                 "--output", str(tmp_path / "k.txt")]) == 1
    err = capsys.readouterr().err.strip()
    assert "k.csv:2: " in err and "\n" not in err
    (tmp_path / "not_a_dir").write_text("")
    assert main(["make-list", "--format", "hmdb51", "--splits-dir", str(tmp_path / "not_a_dir"),
                 "--output", str(tmp_path / "h.txt")]) == 1
    err = capsys.readouterr().err.strip()
    assert "not_a_dir" in err and "\n" not in err
    assert main(["make-list", "--format", "kinetics", "--csv", str(tmp_path),
                 "--output", str(tmp_path / "k.txt")]) == 1
    err = capsys.readouterr().err.strip()
    assert "is a directory" in err and "\n" not in err


def test_cli_output_that_is_a_folder(tmp_path, capsys):
    """An OSError other than a missing file (here: --output names a folder) is one line too, no temp file left."""
    from tada_zoo.cli import main

    (tmp_path / "k.csv").write_text("label,youtube_id,time_start,time_end,split\na,y,0,10,train\n")
    (tmp_path / "out").mkdir()
    assert main(["make-list", "--format", "kinetics", "--csv", str(tmp_path / "k.csv"),
                 "--output", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert "out" in err and "directory" in err.lower() and "\n" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.csv", "out"]
    assert main(["make-list", "--format", "epic100", "--csv", str(tmp_path / "k.csv"), "--heads", "verb, noun",
                 "--output", str(tmp_path / "e.txt")]) == 1
    assert "no 'verb_class'" in capsys.readouterr().err  # the columns are checked, not the spelling of --heads
