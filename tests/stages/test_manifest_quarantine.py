"""Every quarantine reason: the bad sample gets a one-line reason, every good sample is written."""

import csv
import pickle
import shutil

from pipeline import manifest as m
from tests.conftest import manifest_rows, prep, quarantine_rows


def run_manifest(dataset, root, out, *extra):
    # these corpora are mostly bad on purpose: the share limit is tested in tests/test_bugs_are_not_data.py
    result = prep(
        "run",
        "--stage",
        "manifest",
        "--dataset",
        dataset,
        "--root",
        root,
        "--out",
        out,
        "--quiet",
        "--max-quarantine-share",
        1,
        *extra,
    )
    assert result.exit_code == 0, result.output
    return result


def reasons(out):
    return {q["id"]: (q["reason"], q["detail"]) for q in quarantine_rows(out)}


def test_phoenix_bad_frames_and_annotations(phoenix_root, tmp_path):
    base = phoenix_root / "PHOENIX-2014-T"
    frames = base / "features" / "fullFrame-210x260px" / "train"
    names = sorted(p.name for p in frames.iterdir())
    shutil.rmtree(frames / names[0])  # missing frames
    (frames / names[1] / "images0003.png").unlink()  # a gap in the numbering
    png = frames / names[2] / "images0002.png"
    png.write_bytes(png.read_bytes()[:40])  # truncated PNG
    (frames / names[3] / "images0001.png").write_bytes(b"")  # zero-byte PNG
    for extra in sorted((frames / names[4]).glob("*.png"))[1:]:
        extra.unlink()  # a one-frame clip
    corpus = base / "annotations" / "manual" / "PHOENIX-2014-T.train.corpus.csv"
    lines = corpus.read_bytes().splitlines()
    by_name = {line.split(b"|")[0].decode(): i for i, line in enumerate(lines)}
    fields = lines[by_name[names[5]]].split(b"|")
    lines[by_name[names[5]]] = b"|".join(fields[:6] + [b"   "])  # empty translation
    lines[by_name[names[6]]] = lines[by_name[names[6]]] + b" caf\xe9"  # Latin-1 byte: invalid UTF-8
    lines.append(lines[by_name[names[7]]])  # duplicate within the split
    corpus.write_bytes(b"\n".join(lines) + b"\n")
    dev = base / "annotations" / "manual" / "PHOENIX-2014-T.dev.corpus.csv"
    with open(dev, "ab") as handle:
        handle.write(lines[by_name[names[8]]] + b"\n")  # duplicate across splits
    out = tmp_path / "out"
    result = run_manifest("phoenix14t", phoenix_root, out)
    found = reasons(out)
    assert found[names[0]][0] == m.MISSING_FRAMES
    assert found[names[1]] == (m.FRAME_GAP, "1 frame number(s) missing: 3")
    assert found[names[2]][0] == m.CORRUPT_FRAME and "images0002.png" in found[names[2]][1]
    assert found[names[3]][0] == m.CORRUPT_FRAME and "empty" in found[names[3]][1]
    assert found[names[4]][0] == m.TOO_FEW_FRAMES
    assert found[names[5]][0] == m.EMPTY_TEXT
    assert found[names[6]][0] == m.UNDECODABLE_TEXT and "line" in found[names[6]][1]
    duplicates = [q for q in quarantine_rows(out) if q["reason"] == m.DUPLICATE_ID]
    assert {(q["id"], q["split"]) for q in duplicates} == {(names[7], "train"), (names[8], "dev")}
    train_ids = {r["id"] for r in manifest_rows(out, "train")}
    assert train_ids == set(names) - set(names[:7])  # every good sample is written, once
    assert (
        len(manifest_rows(out, "dev")) == 8
    )  # the cross-split duplicate did not displace a dev sample
    assert "quarantined:" in result.stdout and "frame_gap 1" in result.stdout


def test_csl_frame_count_mismatch_and_corrupt_jpeg(csl_root, tmp_path):
    labels = csl_root / "sentence_label" / "csl2020ct_v2.pkl"
    data = pickle.loads(labels.read_bytes())
    data["info"][0]["length"] += 3
    labels.write_bytes(pickle.dumps(data))
    jpeg = csl_root / "sentence" / "frames_512x512" / data["info"][1]["name"] / "000004.jpg"
    jpeg.write_bytes(jpeg.read_bytes()[:200])
    out = tmp_path / "out"
    run_manifest("csl-daily", csl_root, out)
    found = reasons(out)
    assert found[data["info"][0]["name"]][0] == m.FRAME_COUNT_MISMATCH
    assert "annotation says" in found[data["info"][0]["name"]][1]
    assert found[data["info"][1]["name"]][0] == m.CORRUPT_FRAME
    assert len(found) == 2
    out2 = tmp_path / "tolerant"
    run_manifest("csl-daily", csl_root, out2, "--frame-count-tolerance", "3")
    assert set(reasons(out2)) == {data["info"][1]["name"]}


def test_generic_bad_files_ids_paths_and_fields(tmp_path, hand_clip):
    folder = tmp_path / "corpus"
    (folder / "v").mkdir(parents=True)
    shutil.copy(hand_clip, folder / "v" / "good.mp4")
    (folder / "v" / "zero.mp4").touch()
    (folder / "v" / "text.mp4").write_text("this is not a video")
    clip = hand_clip.read_bytes()
    (folder / "v" / "trunc.mp4").write_bytes(clip[: len(clip) * 2 // 3])
    good = {"path": "v/good.mp4", "text": "ok", "language": "en", "split": "train"}
    rows = [
        {"id": "good", **good},
        {"id": "zero", **good, "path": "v/zero.mp4"},
        {"id": "text", **good, "path": "v/text.mp4"},
        {"id": "trunc", **good, "path": "v/trunc.mp4"},
        {"id": "missing", **good, "path": "v/nowhere.mp4"},
        {"id": "a/b", **good},
        {"id": "..up", **good},
        {"id": ".hidden", **good},
        {"id": "escape", **good, "path": "../outside.mp4"},
        {"id": "nolang", **good, "language": ""},
        {"id": "badstart", **good, "start": "soon"},
        {"id": "good2", **good, "start": "0.5", "end": "1.5"},
    ]
    with open(folder / "corpus.csv", "w", newline="") as handle:
        writer = csv.DictWriter(
            handle, fieldnames=["id", "path", "text", "language", "split", "start", "end"]
        )
        writer.writeheader()
        writer.writerows(rows)
    out = tmp_path / "out"
    run_manifest("generic", folder / "corpus.csv", out)
    found = reasons(out)
    expected = {
        "zero": m.UNREADABLE_FILE,
        "text": m.UNREADABLE_FILE,
        "trunc": m.UNREADABLE_FILE,
        "missing": m.UNREADABLE_FILE,
        "a/b": m.UNSAFE_ID,
        "..up": m.UNSAFE_ID,
        ".hidden": m.UNSAFE_ID,
        "escape": m.PATH_ESCAPES_ROOT,
        "nolang": m.MISSING_FIELD,
        "badstart": m.INVALID_FIELD,
    }
    assert {k: v[0] for k, v in found.items()} == expected
    assert "empty file" in found["zero"][1] and "file not found" in found["missing"][1]
    for _reason, detail in found.values():
        assert detail and "\n" not in detail and len(detail) <= 300
    assert [r["id"] for r in manifest_rows(out, "train")] == ["good", "good2"]


def test_generic_csv_is_parsed_per_row(tmp_path, generic_csv):
    """A quoted newline keeps its row whole (no phantom row); an oversized field, an absurd fps,
    and a row the parser rejects each cost that row alone."""
    base = generic_csv.parent
    good = "clips/synth00000.mp4"
    huge = "x" * 200_000
    text = (
        "\n".join(
            [
                "id,path,text,language,split,fps",
                f'multi,{good},"erste zeile\nzweite zeile",de,train,',
                f"big,{good},{huge},de,train,",
                f"still,{good},ruhig,de,train,0",
                f"fast,{good},schnell,de,train,1e9",
                f"after,{good},danach,de,train,",
            ]
        )
        + "\n"
    )
    (base / "rows.csv").write_text(text)
    out = tmp_path / "out"
    run_manifest("generic", base / "rows.csv", out)
    rows = {r["id"]: r for r in manifest_rows(out, "train")}
    assert (
        set(rows) == {"multi", "after"}
        and rows["multi"]["translation"] == "erste zeile\nzweite zeile"
    )
    found = reasons(out)
    assert {k: v[0] for k, v in found.items()} == {
        "big": m.INVALID_FIELD,
        "still": m.INVALID_FIELD,
        "fast": m.INVALID_FIELD,
    }
    assert found["big"][1] == "rows.csv line 4 a field of 200000 characters (limit 131072)"
    assert found["still"][1] == "rows.csv line 5: fps=0 outside 1-240"
