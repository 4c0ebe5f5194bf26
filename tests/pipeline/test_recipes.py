"""``--recipe``: the papers' settings under --config and the flags, their needs per stage, and the
record of every key that departs from them, driven through the CLI on Phoenix14T's real dev
sentences and on the real hand clip."""

from __future__ import annotations

import io
import json
import re
from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest

import recipes
from pipeline import registry, synthetic
from pipeline.execution import all_defaults
from pipeline.manifest import read_provenance
from pipeline.shards import iter_tar_samples
from stages.features.demo import write_tiny_dinov2
from tests.conftest import REPO, one_clip_csv, prep, run_generic


def table(out, stage, split):
    return pq.read_table(out / stage / f"{split}.parquet")


@pytest.fixture(scope="module")
def phoenix_real(tmp_path_factory, phoenix_dev_csv):
    """The 519 real Phoenix14T dev sentences in a Phoenix14T release, 2 tiny frames a clip."""
    base = tmp_path_factory.mktemp("recipes")
    samples = synthetic.samples_from_file(phoenix_dev_csv, max_frames=2)
    root = synthetic.write_phoenix14t(base / "corpus", samples, size=(8, 10))
    vectors = base / "vectors.vec"
    vectors.write_text("2 3\nregnen 1 2 3\ntag 0.5 0.5 0.5\n")
    return root, vectors


def run_pseudo_gloss(root, out, *flags, recipe=("--recipe", "sign2gpt")):
    where = ("--dataset", "phoenix14t", "--root", root, "--out", out, "--quiet")
    return prep("run", "--stage", "pseudo-gloss", *where, *recipe, *flags)


def test_a_broken_recipe_file_is_one_line(tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text('title = "no name"\ncode = "x"\n')
    result = prep("recipes", broken)
    assert result.exit_code == 1 and f"{broken} lacks name" in result.output
    broken.write_text("name = \n")
    result = prep("recipes", broken)
    assert result.exit_code == 1 and "cannot be read: Invalid value" in result.output


def test_recipes_are_listed_with_their_settings_and_needs():
    listed = prep("recipes")
    assert listed.exit_code == 0, listed.output
    assert recipes.available() == ["beyondgloss", "sign2gpt"]
    assert "Sign2GPT (ICLR 2024)" in listed.output and "BeyondGloss (BMVC 2025)" in listed.output
    shown = prep("recipes", "sign2gpt")
    assert shown.exit_code == 0, shown.output
    assert "--gloss-share-by = 'occurrences'" in shown.output
    assert "needs --fasttext for pseudo-gloss" in shown.output
    unknown = prep("recipes", "nope")
    assert unknown.exit_code == 1 and "no recipe 'nope'" in unknown.output


def test_sign2gpt_needs_fasttext_vectors(phoenix_real, tmp_path):
    root, _vectors = phoenix_real
    result = run_pseudo_gloss(root, tmp_path / "out")
    assert result.exit_code == 1
    assert (
        "--recipe sign2gpt needs --fasttext for pseudo-gloss: pretrained fastText" in result.output
    )
    assert not (tmp_path / "out" / "pseudo-gloss").exists()


def all_rows(out):
    splits = ("train", "dev", "test")
    return [r for split in splits for r in table(out, "pseudo-gloss", split).to_pylist()]


def occurrence_shares(rows):
    """Sign2GPT's share: a lemma's count over every row / the number of unique sentences."""
    counts = Counter(g for r in rows for g in r["pseudo_glosses"])
    unique = len({r["translation"] for r in rows})
    return {g: n / unique for g, n in counts.items()}


def test_sign2gpt_vocabulary_and_gloss_filter(phoenix_real, tmp_path):
    """The vocabulary covers train, dev and test; a lemma whose occurrences over unique
    sentences reach 0.4 is dropped (recomputed here from the stage's own rows)."""
    root, vectors = phoenix_real
    out = tmp_path / "out"
    result = run_pseudo_gloss(root, out, "--fasttext", vectors)
    assert result.exit_code == 0, result.output
    rows = all_rows(out)
    shares = occurrence_shares(rows)
    expected_dropped = sorted(g for g, share in shares.items() if share >= 0.4)
    vocab = json.loads((out / "pseudo-gloss" / "vocab.json").read_text())
    summary = json.loads((out / "pseudo-gloss" / "summary.json").read_text())
    assert summary["dropped_by_frequency"] == expected_dropped
    assert {g["gloss"] for g in vocab["glosses"]} == set(shares) - set(expected_dropped)
    for row in rows:  # dev and test lemmas are in the vocabulary too: no -1 ids
        assert all(i > 0 for i in row["pseudo_gloss_ids"])
    meta = vocab["provenance"]
    assert meta["vocabulary_splits"] == ["train", "dev", "test"]
    assert meta["gloss_share_by"] == "occurrences" and meta["max_gloss_share"] == 0.4
    assert meta["recipe"] == {"name": "sign2gpt", "title": "Sign2GPT (ICLR 2024)", "overridden": {}}
    assert read_provenance(out / "pseudo-gloss" / "dev.parquet")["recipe"]["name"] == "sign2gpt"


def test_flags_and_config_win_and_are_recorded_as_overrides(phoenix_real, tmp_path):
    """--config over the recipe, flags over --config; 0.2 by occurrences drops 'grad' (0.26 of
    the dev sentences' occurrences) which a share of sentences (0.18) would keep."""
    root, vectors = phoenix_real
    config = tmp_path / "run.toml"
    config.write_text("max_gloss_share = 0.3\nnlp_batch_size = 64\n")
    out = tmp_path / "out"
    result = run_pseudo_gloss(
        root, out, "--fasttext", vectors, "--config", config, "--max-gloss-share", "0.2"
    )
    assert result.exit_code == 0, result.output
    shares = occurrence_shares(all_rows(out))
    summary = json.loads((out / "pseudo-gloss" / "summary.json").read_text())
    assert summary["dropped_by_frequency"] == sorted(g for g, v in shares.items() if v >= 0.2)
    assert "grad" in summary["dropped_by_frequency"]
    meta = json.loads((out / "pseudo-gloss" / "vocab.json").read_text())["provenance"]
    assert meta["recipe"]["overridden"] == {"max_gloss_share": {"recipe": 0.4, "used": 0.2}}
    (record,) = (out / "runs").glob("pseudo-gloss-*.json")
    assert json.loads(record.read_text())["recipe"] == meta["recipe"]


def test_a_recipe_in_the_config_file(phoenix_real, tmp_path):
    root, vectors = phoenix_real
    config = tmp_path / "run.toml"
    config.write_text(f'recipe = "sign2gpt"\nfasttext = "{vectors}"\n')
    out = tmp_path / "out"
    result = run_pseudo_gloss(root, out, "--config", config, recipe=())
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "pseudo-gloss" / "vocab.json").read_text())["provenance"]
    assert meta["recipe"]["name"] == "sign2gpt" and meta["gloss_share_by"] == "occurrences"


def test_doctor_names_what_each_stage_of_a_recipe_needs():
    captions = prep("doctor", "--recipe", "beyondgloss", "--stage", "hand-captions")
    assert captions.exit_code == 1
    assert "prep: missing: recipe --captioner-model: give --captioner-model PATH" in captions.output
    assert "ShareGPT4Video-8B" in captions.output and "--refine-model" in captions.output
    features = prep("doctor", "--recipe", "beyondgloss", "--stage", "features")
    assert "recipe --captioner-model" not in features.output
    assert "recipe --hamer" in features.output  # the recipe's features list HaMeR
    without_hamer = prep(
        "doctor", "--recipe", "beyondgloss", "--stage", "features", "--features", "dinov2"
    )
    assert "recipe --hamer" not in without_hamer.output


def test_beyondgloss_features_on_the_real_hand_clip(tmp_path, real_hand_clip, hamer_reference):
    """A features run under the BeyondGloss recipe needs DINOv2 and HaMeR, not the captioner;
    the shards record the recipe and every sample's json the frame geometry."""
    annotations = one_clip_csv(real_hand_clip, tmp_path)
    model = write_tiny_dinov2(tmp_path / "dinov2")
    out = tmp_path / "out"
    missing = run_generic(
        "features", annotations, out, "--recipe", "beyondgloss", "--dinov2", model
    )
    assert missing.exit_code == 1 and "needs --hamer for features" in missing.output
    result = run_generic(
        "features",
        annotations,
        out,
        "--recipe",
        "beyondgloss",
        "--dinov2",
        model,
        "--hamer",
        hamer_reference / "hamer_tiny.ckpt",
        "--hamer-config",
        hamer_reference / "config.json",
        "--no-frames",
    )
    assert result.exit_code == 0, result.output
    ((_key, fields),) = iter_tar_samples(next((out / "shards" / "test").glob("*.tar")))
    sample = json.loads(fields["json"])
    assert {"dinov2.npy", "hamer.npy"} <= set(fields)
    recorded = json.loads((out / "shards" / "test" / "index.json").read_text())["provenance"]
    assert recorded["recipe"]["name"] == "beyondgloss"
    assert recorded["recipe"]["overridden"] == {"with_frames": {"recipe": True, "used": False}}
    assert recorded["options"]["frame_geometry"] == "squash-crop"
    assert recorded["options"]["hamer_left_hands"] == "as-network"
    assert sample["provenance"]["recipe"]["name"] == "beyondgloss"


@pytest.mark.parametrize("name", recipes.available())
def test_every_recipe_sets_known_options_and_cites_its_source(name):
    """Each option exists in some stage with a value of its type; each group of settings sits
    under a comment naming a file and line of the paper's code; each need names a real stage."""
    recipe = recipes.load_recipe(name)
    defaults = all_defaults()
    for key, value in recipe.options.items():
        assert key in defaults, key
        if defaults[key] is not None:
            assert isinstance(value, type(defaults[key])), (key, value)
    text = recipe.path.read_text(encoding="utf-8").split("[options]", 1)[1].split("[[needs]]")[0]
    for group in text.strip().split("\n\n"):
        comments = " ".join(line for line in group.splitlines() if line.startswith("#"))
        assert re.search(r"\.(py|yaml):\d+", comments), group
    stages = set(registry.names())
    for need in recipe.needs:
        assert need.stage in stages and need.option in defaults


def readme_recipe_rows() -> dict[str, dict[str, str]]:
    """The README's recipe table: flag -> {"default", "sign2gpt", "beyondgloss"} cell values."""
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    start = lines.index(
        "| setting | default | `sign2gpt` | `beyondgloss` | why the default differs |"
    )
    rows = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split(" | ")]
        flags = [f.strip("` ") for f in cells[0].split(", ")]
        columns = {
            name: [v.strip() for v in cell.split(", ")]
            for name, cell in zip(("default", "sign2gpt", "beyondgloss"), cells[1:4])
        }
        for position, flag in enumerate(flags):
            rows[flag] = {
                name: values[position] if len(values) == len(flags) else values[0]
                for name, values in columns.items()
            }
    return rows


def as_cell(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"`{value}`" if isinstance(value, str) else str(value)


def test_the_readme_table_shows_every_recipe_value():
    rows = readme_recipe_rows()
    for name in recipes.available():
        for key, value in recipes.load_recipe(name).options.items():
            row = rows["--" + key.replace("_", "-")]
            shown = row[name] if row[name] != "the same" else row["default"]
            assert shown == as_cell(value), (name, key, shown)
        for need in recipes.load_recipe(name).needs:
            if need.option not in ("dinov2", "hamer", "captioner_model", "refine_model"):
                assert rows["--" + need.option.replace("_", "-")][name].startswith("required")


def test_beyondgloss_captions_on_the_real_hand_clip(tmp_path, real_hand_clip):
    """hand-captions under the BeyondGloss recipe: 16-frame chunks (the short tail folded into
    the last), captions joined with nothing between them, refined, embedded by an mBART encoder;
    the flags that shrink the run for a test are recorded as departures from the paper."""
    from tests.tiny_models import write_tiny_mbart, write_tiny_qwen2vl, write_tiny_text_lm

    annotations = one_clip_csv(real_hand_clip, tmp_path)
    out = tmp_path / "out"
    missing = run_generic("hand-captions", annotations, out, "--recipe", "beyondgloss")
    assert missing.exit_code == 1
    assert "needs --captioner-model for hand-captions: ShareGPT4Video-8B" in missing.output
    models = {
        "--captioner-model": write_tiny_qwen2vl(tmp_path / "vlm"),
        "--refine-model": write_tiny_text_lm(tmp_path / "lm"),
        "--text-encoder": write_tiny_mbart(tmp_path / "mbart"),
    }
    budgets = ["--max-new-tokens", 6, "--refine-max-new-tokens", 6]
    budgets += ["--captioner-compute", "auto"]  # "original" reproduces a converted LLaVA only
    flags = [a for pair in models.items() for a in pair] + budgets
    result = run_generic("hand-captions", annotations, out, "--recipe", "beyondgloss", *flags)
    assert result.exit_code == 0, result.output
    chunks = table(out, "hand-captions", "test.chunks").to_pylist()
    assert [(c["start_frame"], c["end_frame"]) for c in chunks] == [(0, 16), (16, 32), (32, 58)]
    (sample,) = table(out, "hand-captions", "test").to_pylist()
    assert sample["hand_caption_raw"] == "".join(c["text"].strip() for c in chunks)
    assert sample["hand_caption_timed"].startswith("[0.00–")
    assert len(sample["caption_emb"]) == 32 and len(sample["caption_chunks_emb"]) == 3
    meta = read_provenance(out / "hand-captions" / "test.parquet")
    assert meta["recipe"]["name"] == "beyondgloss"
    assert set(meta["recipe"]["overridden"]) == {
        "max_new_tokens",
        "refine_max_new_tokens",
        "text_encoder",
        "captioner_compute",
    }
    assert meta["options"]["caption_join"] == "plain"
    assert meta["options"]["refine_prompt"] == "beyondgloss"


def test_sign2gpt_frames_on_a_phoenix_release(tmp_path):
    """features under the Sign2GPT recipe: every frame stored squashed to 256x256 at JPEG
    quality 75 (the LMDB creator's PIL defaults), and the samples say so."""
    from PIL import Image

    from stages.features.geometry import squash

    samples = synthetic.default_samples("de", clips=3, frames=(3, 4))
    root = synthetic.write_phoenix14t(tmp_path / "corpus", samples, size=(210, 260))
    out = tmp_path / "out"
    model = write_tiny_dinov2(tmp_path / "dinov2")
    where = ("--dataset", "phoenix14t", "--root", root, "--out", out, "--quiet")
    result = prep("run", "--stage", "features", *where, "--recipe", "sign2gpt", "--dinov2", model)
    assert result.exit_code == 0, result.output
    (shard,) = sorted((out / "shards" / "train").glob("*.tar"))[:1]
    key, fields = next(iter_tar_samples(shard))
    sample = json.loads(fields["json"])
    assert sample["fields"]["frame_*.jpg"]["frame_geometry"] == "squash-twice"
    assert sample["provenance"]["recipe"] == {
        "name": "sign2gpt",
        "title": "Sign2GPT (ICLR 2024)",
        "overridden": {},
    }
    frames = sorted(name for name in fields if name.startswith("frame_"))
    folder = next(p for p in root.rglob(sample["id"]) if p.parent.name == "train")
    source = sorted(folder.glob("*.png"))
    assert len(frames) == len(source) == len(sample["frame_indices"])
    for name, png in zip(frames, source):
        stored = Image.open(io.BytesIO(fields[name]))
        expected = io.BytesIO()
        Image.fromarray(squash(np.asarray(Image.open(png).convert("RGB")), 256)).save(
            expected, format="JPEG", quality=75
        )
        assert stored.size == (256, 256) and fields[name] == expected.getvalue()


def test_a_recipe_of_ones_own_by_path(phoenix_real, tmp_path):
    root, vectors = phoenix_real
    mine = tmp_path / "lab.toml"
    mine.write_text(
        'name = "lab"\ntitle = "Our lab"\ncode = "internal"\n\n[options]\n'
        "# stricter filter (our_trainer.py:12)\nmax_gloss_share = 0.3\n\n"
        '[[needs]]\noption = "fasttext"\nstage = "pseudo-gloss"\nwhat = "our vectors"\n'
    )
    refused = run_pseudo_gloss(root, tmp_path / "a", recipe=("--recipe", mine))
    assert refused.exit_code == 1
    assert "--recipe lab needs --fasttext for pseudo-gloss: our vectors" in refused.output
    out = tmp_path / "b"
    result = run_pseudo_gloss(root, out, "--fasttext", vectors, recipe=("--recipe", mine))
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "pseudo-gloss" / "vocab.json").read_text())["provenance"]
    assert meta["recipe"]["name"] == "lab" and meta["max_gloss_share"] == 0.3
