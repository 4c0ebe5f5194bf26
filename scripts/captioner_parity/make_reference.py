"""Record what BeyondGloss's ORIGINAL captioning code says about the tiny checkpoints of
tests/stages/test_captioner_parity.py, for that test to compare ``prep`` with.

Two halves, two environments:

- ``record`` (prep's venv): builds the frames and both checkpoint variants with the test's own
  functions, runs ``original`` in the other environment once per variant, and writes
  ``tests/data/captioner_parity/reference.json`` (token ids, captions, input digest, versions)
  and ``first_logits.npz`` (each chunk's first-step logits, fp16 as computed).
- ``original`` (the original's environment, never imported by prep): loads the checkpoint with
  ShareGPT4Video's ``load_pretrained_model`` on the CPU and captions the frame folder with
  BeyondGloss's ``describe_video``, both imported unmodified from their sources. The only
  additions are instrumentation: ``model.generate`` is wrapped to keep the generated ids and
  first-step scores, and ``llava.train.train`` (imported by ``builder.py`` for LoRA loading
  only, and pulling in training dependencies) is replaced by an empty module.
- ``measure`` (prep's venv): the README's figures, prep's settings one by one against the
  recorded references (first-step logit difference, first differing greedy token).

The original environment, as used for the committed references::

    python3 -m venv /tmp/orig-venv
    /tmp/orig-venv/bin/pip install transformers==4.37.2 tokenizers==0.15.1 "numpy<2" pillow \
        safetensors sentencepiece "huggingface-hub<0.25"
    /tmp/orig-venv/bin/pip install --no-deps accelerate==0.26.1 psutil
    # torch 2.14.1: the project venv's, put on the path by a .pth file listing a folder of
    # symlinks to its torch (and dist-info), sympy, networkx, jinja2, ... packages

with ShareGPT4Omni/ShareGPT4Video at 7e02ee6 (its ``llava/`` folder) and elsobhano/BeyondGloss
at 11eed23 (its ``sign_video_descriptor/`` folder) checked out anywhere::

    .venv/bin/python scripts/captioner_parity/make_reference.py record \
        --python /tmp/orig-venv/bin/python --sharegpt4video SRC --beyondgloss SRC
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "data" / "captioner_parity"
COMMITS = {"ShareGPT4Omni/ShareGPT4Video": "7e02ee6", "elsobhano/BeyondGloss": "11eed23"}
log = logging.getLogger("make_reference")


def record(args: argparse.Namespace) -> None:
    """Build the inputs here, caption them there, write the reference files."""
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from tests.stages.test_captioner_parity import VARIANTS, build_inputs, digest

    with tempfile.TemporaryDirectory() as tmp:
        paths = build_inputs(Path(tmp))
        reference = {"inputs": digest(paths), "commits": COMMITS, "variants": {}}
        logits = {}
        for variant in VARIANTS:
            result = run_original(args, paths[variant], paths["clip"], paths["frames"])
            reference["versions"] = result.pop("versions")
            for number, chunk in enumerate(result["chunks"]):
                logits[f"{variant}/{number}"] = np.asarray(chunk.pop("first_logits"), np.float16)
            reference["variants"][variant] = result["chunks"]
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "reference.json").write_text(json.dumps(reference, separators=(",", ":")) + "\n")
    np.savez_compressed(OUT / "first_logits.npz", **logits)
    log.info("wrote %s", OUT)


def run_original(args: argparse.Namespace, checkpoint: Path, clip: Path, frames: Path) -> dict:
    """The checkpoint's config names the hub's CLIP; the original loads ``mm_vision_tower`` by
    that name (clip_encoder.py l.29-30), so it is pointed at the local CLIP folder here."""
    config = json.loads((checkpoint / "config.json").read_text())
    config["mm_vision_tower"] = str(clip)
    (checkpoint / "config.json").write_text(json.dumps(config, indent=2))
    command = [args.python, __file__, "original", str(checkpoint), str(frames)]
    command += [
        "--sharegpt4video",
        str(args.sharegpt4video),
        "--beyondgloss",
        str(args.beyondgloss),
    ]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.splitlines()[-1])


def original(args: argparse.Namespace) -> None:
    """Runs in the original's environment: prints one JSON line."""
    import torch
    import transformers

    sys.path[:0] = [str(args.sharegpt4video), str(args.beyondgloss / "sign_video_descriptor")]
    sys.modules["llava.train.train"] = types.ModuleType("llava.train.train")
    sys.modules["llava.train.train"].smart_tokenizer_and_embedding_resize = None
    import describe_segments as bg
    from llava.mm_utils import get_model_name_from_path
    from llava.model.builder import load_pretrained_model

    path = str(args.checkpoint)
    tokenizer, model, processor, _ = load_pretrained_model(
        path, None, get_model_name_from_path(path), device_map="cpu", device="cpu"
    )
    chunks = []
    generate = model.generate

    def recorded(*positional, **options):
        output = generate(*positional, **options, output_scores=True, return_dict_in_generate=True)
        ids = output.sequences[0].tolist()
        first = output.scores[0][0].float().tolist()
        chunks.append({"ids": ids, "first_logits": first})
        return output.sequences

    model.generate = recorded
    data = bg.describe_video(
        model.eval(),
        processor,
        tokenizer,
        str(args.frames),
        qs=bg.DEFAULT_QUERY,
        pre_query_prompt=bg.PRE_QUERY_PROMPT,
        num_frames=16,
        conv_mode="llava_llama_3",  # describe_segments.py l.174's default
    )
    for number, chunk in enumerate(chunks):
        chunk["text"] = data[f"chunk_{number}"]
    versions = {"transformers": transformers.__version__, "torch": torch.__version__}
    versions["tokenizers"] = __import__("tokenizers").__version__
    versions["dtype"] = str(model.dtype)
    print(json.dumps({"chunks": chunks, "versions": versions}))


# (precision, compute, image backend): prep's default on a GPU, its default settings in the
# original's fp16, one fix at a time, and the recipe's
SETTINGS = (
    ("bf16", "auto", "torchvision"),
    ("fp16", "auto", "torchvision"),
    ("fp16", "auto", "pil"),
    ("fp16", "original", "torchvision"),
    ("fp16", "original", "pil"),
)


def measure(args: argparse.Namespace) -> None:
    """The README's figures: per setting, the largest first-step logit difference from the
    original's and the first generated token that differs, over both variants and chunks."""
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from tests.conftest import prep
    from tests.stages.test_captioner_parity import VARIANTS, build_inputs

    reference = json.loads((OUT / "reference.json").read_text())
    recorded = np.load(OUT / "first_logits.npz")
    with tempfile.TemporaryDirectory() as tmp:
        paths = build_inputs(Path(tmp))
        for variant in VARIANTS:
            target = Path(tmp) / f"{variant}-converted"
            prep("convert-captioner", paths[variant], target, "--vision-tower", paths["clip"])
            paths[variant] = target
        logging.basicConfig(level=logging.INFO, format="%(message)s", force=True)  # prep's CLI
        for setting in SETTINGS:  # set its own
            worst, parts = 0.0, []
            for variant in VARIANTS:
                runs = generated(paths[variant], paths["frames"], *setting, args.tokens)
                for number, (ids, logits) in enumerate(runs):
                    original = recorded[f"{variant}/{number}"].astype(np.float32)
                    worst = max(worst, float(np.abs(logits[: len(original)] - original).max()))
                    wanted = reference["variants"][variant][number]["ids"][1:]
                    parts.append(
                        next((i for i, (a, b) in enumerate(zip(ids, wanted)) if a != b), None)
                    )
            log.info("%s: logits max diff %.3g, first differing token %s", setting, worst, parts)


def generated(folder: Path, frames: Path, precision: str, compute: str, backend: str, tokens: int):
    """(greedy ids, first-step logits) per chunk, as the hand-captions stage computes them."""
    import numpy as np
    import torch
    from PIL import Image
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from stages.hand_captions.grid import grid_image
    from stages.hand_captions.original_numerics import use_original_compute
    from stages.hand_captions.prompts import DEFAULT_PROMPT
    from stages.hand_captions.vlm import chat_messages, image_processor

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    processor = AutoProcessor.from_pretrained(folder, **image_processor(folder, backend, ""))
    prompt = processor.apply_chat_template(
        chat_messages("grid", DEFAULT_PROMPT), add_generation_prompt=True, tokenize=False
    )
    model = LlavaForConditionalGeneration.from_pretrained(folder, dtype=dtype).eval()
    if compute == "original":
        use_original_compute(model, str(folder))
    images = np.stack([np.asarray(Image.open(f)) for f in sorted(frames.iterdir())])
    runs = []
    for chunk in (images[:16], images[16:]):
        inputs = processor(text=[prompt], images=[grid_image(chunk)], return_tensors="pt")
        inputs["pixel_values"] = inputs["pixel_values"].to(dtype)
        with torch.inference_mode():
            out = model.generate(
                **inputs,
                max_new_tokens=tokens,
                do_sample=False,
                output_scores=True,
                return_dict_in_generate=True,
            )
        ids = out.sequences[0, inputs["input_ids"].shape[1] :].tolist()
        runs.append((ids, out.scores[0][0].float().numpy()))
    return runs


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    modes = parser.add_subparsers(dest="mode", required=True)
    first = modes.add_parser("record")
    first.add_argument("--python", required=True, help="the original environment's python")
    third = modes.add_parser("measure")
    third.add_argument("--tokens", type=int, default=512)
    second = modes.add_parser("original")
    second.add_argument("checkpoint", type=Path)
    second.add_argument("frames", type=Path)
    for mode in (first, second):
        mode.add_argument("--sharegpt4video", type=Path, required=True, help="its checkout")
        mode.add_argument("--beyondgloss", type=Path, required=True, help="its checkout")
    args = parser.parse_args()
    {"record": record, "original": original, "measure": measure}[args.mode](args)


if __name__ == "__main__":
    main()
