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
