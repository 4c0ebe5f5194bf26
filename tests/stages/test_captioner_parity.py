"""``--recipe beyondgloss`` captions as BeyondGloss's own code does, token for token, in fp16.

The references in ``tests/data/captioner_parity/`` were recorded by running the ORIGINAL code,
unmodified, in a separate environment: ShareGPT4Omni/ShareGPT4Video's ``llava`` package (7e02ee6,
``load_pretrained_model`` with ``device="cpu"``: fp16, ``builder.py`` l.47) driven by
elsobhano/BeyondGloss ``sign_video_descriptor/describe_segments.py`` (11eed23) ``describe_video``
(frames read from PNG folders, 16-frame chunks, grid images, ``llava_llama_3``, greedy, 512 new
tokens, ``.strip()``), under transformers 4.37.2, tokenizers 0.15.1 and torch 2.14.1 on CPU.
``scripts/captioner_parity/make_reference.py`` says how; it builds the same checkpoints and
frames with the functions below and records their digests, checked here first.

The checkpoints are ShareGPT4Video-8B's format (tests/stages/test_convert_captioner.py), tiny
and random, with the real tower geometry (336 / 14: 576 image tokens), in both variants: the
tower from the CLIP folder, and a fine-tuned tower kept in the checkpoint
(``unfreeze_mm_vision_tower``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline import synthetic
from tests.conftest import prep
from tests.stages.test_convert_captioner import VISION, write_clip, write_original
from tests.tiny_models import write_tiny_text_lm

REFERENCES = Path(__file__).parents[1] / "data" / "captioner_parity"
VISION_336 = {**VISION, "image_size": 336, "patch_size": 14}  # the real tower's geometry
# 40 frames: two chunks, 16 and 24 (the tail joins the last chunk, describe_segments.py l.120-130)
FRAMES, FRAME_WIDTH, FRAME_HEIGHT, FPS = 40, 64, 48, 25
VARIANTS = {"clip-folder": False, "own-tower": True}  # unfreeze_mm_vision_tower


def write_frames(folder: Path) -> Path:
    """The clip as BeyondGloss reads it: a folder of PNG frames, sorted by name."""
    from PIL import Image

    folder.mkdir(parents=True)
    frames = synthetic.render_frames(FRAMES, FRAME_WIDTH, FRAME_HEIGHT, "captioner-parity")
    for number, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"frame_{number:04d}.png")
    return folder


def build_inputs(base: Path) -> dict[str, Path]:
    """The frames, the CLIP folder and one original-format checkpoint per variant."""
    paths = {
        "frames": write_frames(base / "frames"),
        "clip": write_clip(base / "clip", 2, VISION_336),
    }
    for name, unfreeze in VARIANTS.items():
        paths[name] = write_original(base / name, unfreeze=unfreeze, vision=VISION_336)
    return paths


def digest(paths: dict[str, Path]) -> str:
    """What the references depend on: every weight and tokenizer byte, every frame's pixels."""
    from PIL import Image

    sha = hashlib.sha256()
    for name in sorted(paths):
        for file in sorted(paths[name].iterdir()):
            if file.suffix == ".png":
                sha.update(np.asarray(Image.open(file).convert("RGB")).tobytes())
            elif file.suffix == ".safetensors" or file.name == "tokenizer.json":
                sha.update(file.read_bytes())
    return sha.hexdigest()[:16]


# Greedy tokens never depend on the budget left, so the first TOKENS of the original's 512 are
# what a shorter run must give (keeps the test to seconds; the recipe's 512 is overridden). The
# original's captions: clip-folder 512 tokens each (no end token), own-tower 4 then 243 tokens
# and an end token, so both the budget and the end of a caption are compared.
TOKENS = 48


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads((REFERENCES / "reference.json").read_text())


@pytest.fixture(scope="module")
def built(tmp_path_factory, reference) -> dict[str, Path]:
    """The inputs the references were recorded on (checked by digest), both checkpoints
    converted, the clip listed in a generic CSV (a PNG frame folder, as BeyondGloss reads)."""
    base = tmp_path_factory.mktemp("parity")
    paths = build_inputs(base)
    assert digest(paths) == reference["inputs"], (
        "the checkpoints or frames built here differ from those the references were recorded "
        "on: rerun scripts/captioner_parity/make_reference.py"
    )
    for variant in VARIANTS:
        target = base / f"{variant}-converted"
        result = prep("convert-captioner", paths[variant], target, "--vision-tower", paths["clip"])
        assert result.exit_code == 0, result.output
        paths[f"{variant}-converted"] = target
    paths["csv"] = base / "clips.csv"
    paths["csv"].write_text(
        f"id,path,text,language,split,fps\nclip,frames,eine hand,de,test,{FPS}\n"
    )
    paths["refiner"] = write_tiny_text_lm(base / "refiner")
    return paths


def run_recipe(paths: dict[str, Path], out: Path, converted: Path, *flags: object):
    return prep(
        "run",
        "--stage",
        "hand-captions",
        "--dataset",
        "generic",
        "--root",
        paths["csv"],
        "--out",
        out,
        "--quiet",
        "--recipe",
        "beyondgloss",
        "--captioner-model",
        converted,
        "--refine-model",
        paths["refiner"],
        "--refine-max-new-tokens",
        2,
        "--text-encoder",
        "none",
        "--device",
        "cpu",
        "--max-new-tokens",
        TOKENS,
        *flags,
    )


def generated_ids(monkeypatch) -> list[list[int]]:
    """Every row that LlavaForConditionalGeneration.generate returns, new tokens only."""
    from transformers import LlavaForConditionalGeneration

    rows = []
    generate = LlavaForConditionalGeneration.generate

    def recorded(self, **inputs):
        output = generate(self, **inputs)
        rows.extend(output[:, inputs["input_ids"].shape[1] :].tolist())
        return output

    monkeypatch.setattr(LlavaForConditionalGeneration, "generate", recorded)
    return rows


def original_caption(converted: Path, ids: list[int]) -> str:
    """describe_segments.py l.117: batch_decode(..., skip_special_tokens=True)[0].strip()."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(converted / "tokenizer.json"))
    return tokenizer.decode(ids, skip_special_tokens=True).strip()


@pytest.mark.parametrize("variant", VARIANTS)
def test_recipe_captions_equal_the_original_codes_token_for_token(
    built, reference, variant, tmp_path, monkeypatch
):
    rows = generated_ids(monkeypatch)
    out = tmp_path / "out"
    result = run_recipe(built, out, built[f"{variant}-converted"])
    assert result.exit_code == 0, result.output
    chunks = pq.read_table(out / "hand-captions" / "test.chunks.parquet").to_pylist()
    expected = reference["variants"][variant]
    assert len(chunks) == len(expected) == 2 and len(rows) == 2
    stops = set(json.loads((built[variant] / "generation_config.json").read_text())["eos_token_id"])
    for chunk, row, original in zip(chunks, rows, expected):
        wanted = original["ids"][1 : TOKENS + 1]  # [0]: the BOS that 4.37's generate puts first
        kept = next((wanted[:i] for i, token in enumerate(wanted) if token in stops), wanted)
        upto = wanted[: len(kept) + 1]  # the end token too, where the original met one
        assert row[: len(upto)] == upto
        assert chunk["text"] == original_caption(built[f"{variant}-converted"], kept)
        assert original["text"].startswith(chunk["text"])
        assert chunk["generated_tokens"] == len(kept)
    meta = json.loads(pq.read_schema(out / "hand-captions" / "test.parquet").metadata[b"prep"])
    options = meta["options"]
    assert (options["captioner_precision"], options["captioner_compute"]) == ("fp16", "original")
    assert (options["image_backend"], options["caption_text"]) == ("pil", "stripped")


def test_first_step_logits_equal_the_originals_in_fp16(built, reference):
    """Each chunk's first-step logits, fp16 as the original computed them, equal bit for bit
    with the recipe's settings."""
    import torch
    from PIL import Image
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from stages.hand_captions.grid import grid_image
    from stages.hand_captions.original_numerics import use_original_compute
    from stages.hand_captions.prompts import DEFAULT_PROMPT
    from stages.hand_captions.vlm import chat_messages

    recorded = np.load(REFERENCES / "first_logits.npz")
    frames = np.stack([np.asarray(Image.open(f)) for f in sorted(built["frames"].iterdir())])
    for variant in VARIANTS:
        folder = built[f"{variant}-converted"]
        processor = AutoProcessor.from_pretrained(folder, backend="pil")
        prompt = processor.apply_chat_template(
            chat_messages("grid", DEFAULT_PROMPT), add_generation_prompt=True, tokenize=False
        )
        model = LlavaForConditionalGeneration.from_pretrained(folder, dtype=torch.float16)
        use_original_compute(model.eval(), str(folder))
        for number, chunk in enumerate((frames[:16], frames[16:])):
            inputs = processor(text=[prompt], images=[grid_image(chunk)], return_tensors="pt")
            inputs["pixel_values"] = inputs["pixel_values"].half()
            with torch.inference_mode():
                logits = model(**inputs).logits[0, -1].numpy()
            original = recorded[f"{variant}/{number}"]
            assert np.array_equal(logits[: len(original)], original), (variant, number)


def test_other_captioners_are_refused_in_one_line_before_any_clip_is_read(built, tmp_path):
    """The recipe's ``--captioner-compute original`` reproduces a converted LLaVA only: any
    other captioner stops at once, saying which flag runs it anyway (recorded as a departure)."""
    from tests.tiny_models import write_tiny_qwen2vl

    qwen = write_tiny_qwen2vl(tmp_path / "qwen2vl")
    result = run_recipe(built, tmp_path / "out", qwen)
    error = result.stderr.strip()
    assert result.exit_code == 1 and len(error.splitlines()) == 1, result.output
    assert "is a 'qwen2_vl' model: pass --captioner-compute auto" in error
    assert not (tmp_path / "out" / "hand-captions" / "test.parquet").exists()

    out = tmp_path / "auto"
    result = run_recipe(built, out, qwen, "--captioner-compute", "auto", "--max-new-tokens", 2)
    assert result.exit_code == 0, result.output
    meta = json.loads(pq.read_schema(out / "hand-captions" / "test.parquet").metadata[b"prep"])
    assert meta["recipe"]["overridden"]["captioner_compute"] == {
        "recipe": "original",
        "used": "auto",
    }
    assert meta["options"]["image_backend"] == "pil"  # Qwen2-VL's PIL image processor


def test_caption_text_collapsed_by_default_stripped_as_beyondgloss_keeps_it():
    from stages.hand_captions.generation import kept_text

    decoded = "  The right hand rises.\n\nThen  it  falls. "
    assert kept_text(decoded, "collapsed") == "The right hand rises. Then it falls."
    assert kept_text(decoded, "stripped") == "The right hand rises.\n\nThen  it  falls."


def test_vllm_is_refused_the_originals_arithmetic_in_one_line(built, tmp_path, monkeypatch):
    """vLLM runs its own kernels and image processing: the recipe's settings cannot hold there,
    so it stops before any clip is read rather than record settings it did not use."""
    import importlib.util

    find_spec = importlib.util.find_spec  # as if vLLM were installed
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: object() if name == "vllm" else find_spec(name, *a),
    )
    result = run_recipe(
        built, tmp_path / "out", built["clip-folder-converted"], "--captioner", "vllm"
    )
    error = result.stderr.strip()
    assert result.exit_code == 1 and len(error.splitlines()) == 1, result.output
    assert "pass --captioner-compute auto --image-backend torchvision" in error
