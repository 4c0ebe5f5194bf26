"""``prep convert-captioner`` on an original-format LLaVA-Llama checkpoint (ShareGPT4Video-8B's
layout: original weight names and config fields, Llama-3 tokenizer, the tower in a CLIP folder),
tiny and random, written here. The reference follows ShareGPT4Omni/ShareGPT4Video: prompt =
conversation.py l.67-75 + l.392-401 with describe_segments.py l.157; ids = mm_utils.py l.188-207;
image = mm_utils.py l.140-146 (the anyres overview describe_segments.py l.96 feeds); features =
clip_encoder.py l.35-43; projector = builder.py l.39-46; splice = llava_arch.py l.242-267.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from stages.hand_captions.grid import grid_image
from stages.hand_captions.prompts import DEFAULT_PROMPT
from tests.conftest import prep, run_generic

IMAGE_TOKEN_INDEX = -200  # llava/constants.py l.8
EDGE, PATCH = 56, 14  # a 4 x 4 patch CLIP; the real tower is 336 / 14
CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
LLAMA3_SPECIAL = (
    "<|begin_of_text|> <|end_of_text|> <|start_header_id|> <|end_header_id|> <|eot_id|>"
)
VISION = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 3}
VISION |= {"num_attention_heads": 2, "image_size": EDGE, "patch_size": PATCH}
SYSTEM = (
    "You are a helpful language and vision assistant. You are able to understand the visual "
    "content that the user provides, and assist the user with a variety of tasks using natural "
    "language."
)
LLAMA = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2}
LLAMA |= {"num_attention_heads": 4, "num_key_value_heads": 2, "hidden_act": "silu"}
LLAMA |= {"max_position_embeddings": 8192, "rms_norm_eps": 1e-5, "rope_theta": 500000.0}
LLAMA |= {"tie_word_embeddings": False}
# what ShareGPT4Video's training writes (scripts/train/8b/*.sh, llava_arch.py l.71-76)
LLAVA_FIELDS = {"architectures": ["LlavaLlamaForCausalLM"], "model_type": "llava_llama"}
LLAVA_FIELDS |= {"mm_vision_tower": "openai/clip-vit-large-patch14-336", "mm_hidden_size": 32}
LLAVA_FIELDS |= {"mm_projector_type": "mlp2x_gelu", "mm_vision_select_layer": -2}
LLAVA_FIELDS |= {"mm_vision_select_feature": "patch", "mm_patch_merge_type": "spatial_unpad"}
LLAVA_FIELDS |= {"image_aspect_ratio": "anyres", "image_grid_pinpoints": [[336, 672], [672, 336]]}
LLAVA_FIELDS |= {"mm_use_im_start_end": False, "mm_use_im_patch_token": False}
LLAVA_FIELDS |= {"tokenizer_model_max_length": 6144, "tokenizer_padding_side": "right"}
LLAVA_FIELDS |= {"tune_mm_mlp_adapter": False, "freeze_mm_mlp_adapter": False, "use_mm_proj": True}
LLAVA_FIELDS |= {"unfreeze_mm_vision_tower": False, "pretraining_tp": 1, "rope_scaling": None}
LLAVA_FIELDS |= {"torch_dtype": "float32", "transformers_version": "4.40.0"}


def llama3_tokenizer():
    """Byte-level BPE with Llama 3's special tokens and its post-processor adding BOS."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=LLAMA3_SPECIAL.split(),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator([DEFAULT_PROMPT, SYSTEM] * 4, trainer)
    bos = tokenizer.token_to_id("<|begin_of_text|>")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", bos)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>"
    )


def write_clip(folder: Path, seed: int, vision: dict = VISION) -> Path:
    """A whole CLIPModel folder with an old-style preprocessor_config.json, like the hub's
    openai/clip-vit-large-patch14-336 (``vision``: the tower's geometry)."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    text = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1}
    text |= {"num_attention_heads": 2, "vocab_size": 100}
    torch.manual_seed(seed)
    CLIPModel(
        CLIPConfig(vision_config=vision, text_config=text, projection_dim=16)
    ).save_pretrained(folder)
    edge = vision["image_size"]
    preprocessing = {"crop_size": edge, "size": edge, "do_center_crop": True, "resample": 3}
    preprocessing |= {"do_normalize": True, "do_resize": True, "image_mean": CLIP_MEAN}
    preprocessing |= {"image_std": CLIP_STD, "feature_extractor_type": "CLIPFeatureExtractor"}
    (folder / "preprocessor_config.json").write_text(json.dumps(preprocessing))
    return folder


def original_weights(vocab: int, vision: dict = VISION) -> dict:
    """LlavaLlamaForCausalLM's state dict: Llama's own names (it subclasses LlamaForCausalLM,
    llava_llama.py l.41-49), the projector as nn.Sequential, image_newline, and a copy of the
    vision tower that the original reads only with unfreeze_mm_vision_tower."""
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(1)
    weights = LlamaForCausalLM(LlamaConfig(vocab_size=vocab, **LLAMA)).state_dict()
    hidden, features = LLAMA["hidden_size"], vision["hidden_size"]
    for name, shape in {"0": (hidden, features), "2": (hidden, hidden)}.items():
        weights[f"model.mm_projector.{name}.weight"] = torch.randn(shape) * 0.2
        weights[f"model.mm_projector.{name}.bias"] = torch.randn(hidden) * 0.2
    weights["model.image_newline"] = torch.randn(hidden)
    for key, tensor in CLIPVisionModel(CLIPVisionConfig(**vision)).state_dict().items():
        weights[f"model.vision_tower.vision_tower.vision_model.{key}"] = tensor  # 4.x's names
    return {k: v.contiguous() for k, v in weights.items()}


def write_original(
    folder: Path, *, fmt: str = "safetensors", unfreeze: bool = False, vision: dict = VISION
) -> Path:
    """config.json, tokenizer, generation_config.json and the weights in two shards + index."""
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    tokenizer = llama3_tokenizer()
    tokenizer.save_pretrained(folder)
    settings = json.loads((folder / "tokenizer_config.json").read_text())
    settings["tokenizer_class"] = "PreTrainedTokenizerFast"  # as Llama 3's, which 4.x loads
    (folder / "tokenizer_config.json").write_text(json.dumps(settings, indent=2))
    saved = json.loads((folder / "tokenizer.json").read_text())  # merges as "a b" strings, as
    saved["model"]["merges"] = [" ".join(pair) for pair in saved["model"]["merges"]]  # Llama 3's
    (folder / "tokenizer.json").write_text(json.dumps(saved, ensure_ascii=False, indent=2))
    ids = tokenizer.convert_tokens_to_ids
    config = {**LLAMA, **LLAVA_FIELDS, "vocab_size": len(tokenizer)}
    config["unfreeze_mm_vision_tower"] = unfreeze
    config |= {"bos_token_id": ids("<|begin_of_text|>"), "eos_token_id": ids("<|end_of_text|>")}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    ends = [ids("<|end_of_text|>"), ids("<|eot_id|>")]
    generation = {"bos_token_id": config["bos_token_id"], "eos_token_id": ends}
    (folder / "generation_config.json").write_text(json.dumps(generation))
    weights = original_weights(len(tokenizer), vision)
    names = sorted(weights)
    prefix, suffix = (
        ("model", ".safetensors") if fmt == "safetensors" else ("pytorch_model", ".bin")
    )
    weight_map = {}
    for number, chunk in enumerate((names[: len(names) // 2], names[len(names) // 2 :]), 1):
        shard = f"{prefix}-{number:05d}-of-00002{suffix}"
        part = {k: weights[k] for k in chunk}
        if fmt == "safetensors":  # with the metadata transformers 4 requires of a shard
            save_file(part, str(folder / shard), {"format": "pt"})
        else:
            torch.save(part, str(folder / shard))
        weight_map |= dict.fromkeys(chunk, shard)
    index = {"metadata": {"total_size": 0}, "weight_map": weight_map}
    (folder / f"{prefix}{suffix}.index.json").write_text(json.dumps(index))
    return folder


def llava_llama_3_prompt(query: str) -> str:
    """conv_templates['llava_llama_3'] with one user turn and the open assistant turn."""
    header = "<|start_header_id|>{}<|end_header_id|>\n\n"
    system = "<|begin_of_text|>" + header.format("system") + SYSTEM
    user = header.format("user") + "<image>\n" + query
    return system + "<|eot_id|>" + user + "<|eot_id|>" + header.format("assistant")


def original_input_ids(source: Path, prompt: str) -> list[int]:
    """tokenizer_image_token: each piece around <image> tokenised with BOS, one BOS kept."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(source / "tokenizer.json"))
    pieces = [tokenizer.encode(piece).ids for piece in prompt.split("<image>")]
    bos = tokenizer.token_to_id("<|begin_of_text|>")
    offset = int(pieces[0][:1] == [bos])
    ids = pieces[0][:offset]
    for number, piece in enumerate(pieces):
        ids += ([IMAGE_TOKEN_INDEX] if number else []) + piece[offset:]
    return ids


def original_squashed_image(image: np.ndarray):
    """mm_utils.py l.142-146: resized to edge x edge (PIL's default filter), then CLIP's
    processor, for which that size is already its resize and crop."""
    import torch
    from PIL import Image

    pixels = np.asarray(Image.fromarray(image).resize((EDGE, EDGE)), np.float32) / 255
    pixels = (pixels - np.array(CLIP_MEAN, np.float32)) / np.array(CLIP_STD, np.float32)
    return torch.from_numpy(pixels.transpose(2, 0, 1).copy())[None]


class OriginalModel:
    """LlavaLlamaForCausalLM's forward for one prompt with one image, from the original weights."""

    def __init__(self, source: Path, clip: Path) -> None:
        from transformers import CLIPVisionModel, LlamaConfig, LlamaForCausalLM

        self.config = json.loads((source / "config.json").read_text())
        weights = weights_of(source)
        mlp = "model.mm_projector."
        self.projector = {k.removeprefix(mlp): v for k, v in weights.items() if k.startswith(mlp)}
        self.llama = LlamaForCausalLM(LlamaConfig(vocab_size=self.config["vocab_size"], **LLAMA))
        own = {k: v for k, v in weights.items() if k.startswith(("model.embed", "model.layers"))}
        own |= {k: weights[k] for k in ("model.norm.weight", "lm_head.weight")}
        self.llama.load_state_dict(own, strict=True)
        self.tower = CLIPVisionModel.from_pretrained(clip)  # clip_encoder.py l.30
        self.llama.eval(), self.tower.eval()

    def image_features(self, pixel_values):
        import torch.nn.functional as F

        hidden = self.tower(pixel_values, output_hidden_states=True).hidden_states
        features = hidden[self.config["mm_vision_select_layer"]][:, 1:]  # "patch": no CLS
        p = self.projector  # Linear, GELU, Linear
        features = F.gelu(F.linear(features, p["0.weight"], p["0.bias"]))
        return F.linear(features, p["2.weight"], p["2.bias"])

    def logits(self, ids: list[int], pixel_values):
        import torch

        with torch.no_grad():
            at = ids.index(IMAGE_TOKEN_INDEX)
            embed = self.llama.get_input_embeddings()
            pieces = [embed(torch.tensor(ids[:at])), self.image_features(pixel_values)[0]]
            pieces.append(embed(torch.tensor(ids[at + 1 :], dtype=torch.long)))
            return self.llama(inputs_embeds=torch.cat(pieces)[None]).logits[0]

    def greedy(self, ids: list[int], pixel_values, count: int) -> list[int]:
        generated = []
        for _ in range(count):
            generated.append(int(self.logits(ids + generated, pixel_values)[-1].argmax()))
        return generated


def convert(source: Path, target: Path, clip: Path):
    return prep("convert-captioner", source, target, "--vision-tower", clip)


def weights_of(folder: Path) -> dict:
    from safetensors.torch import load_file

    return {k: v for shard in folder.glob("*.safetensors") for k, v in load_file(shard).items()}


def collapsed(ids: list[int], image_token: int) -> list[int]:
    """The processor's run of image tokens back to the original's one -200."""
    marked = [IMAGE_TOKEN_INDEX if t == image_token else t for t in ids]
    return [t for i, t in enumerate(marked) if t != IMAGE_TOKEN_INDEX or marked[i - 1] != t]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("sharegpt4video")
    paths = {"source": write_original(base / "original"), "clip": write_clip(base / "clip", 2)}
    paths["target"] = base / "converted"
    result = convert(paths["source"], paths["target"], paths["clip"])
    assert result.exit_code == 0, result.output
    assert f"{paths['target'] / 'config.json'}\n" in result.stdout
    return paths


def test_converted_logits_equal_the_original_forward_pass(checkpoint):
    import torch
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from stages.hand_captions.vlm import chat_messages

    source, target = checkpoint["source"], checkpoint["target"]
    processor = AutoProcessor.from_pretrained(target)
    prompt = processor.apply_chat_template(
        chat_messages("grid", DEFAULT_PROMPT), add_generation_prompt=True, tokenize=False
    )
    assert prompt == llava_llama_3_prompt(DEFAULT_PROMPT)
    frames = np.random.default_rng(3).integers(0, 256, (5, 30, 40, 3), dtype=np.uint8)
    grid = grid_image(frames, separator=6)  # 3 x 3 tiles, wider than high
    inputs = processor(text=[prompt], images=[grid], return_tensors="pt")
    image_token = processor.tokenizer.convert_tokens_to_ids("<image>")
    ids = inputs["input_ids"][0].tolist()
    assert ids.count(image_token) == (EDGE // PATCH) ** 2
    assert collapsed(ids, image_token) == original_input_ids(source, prompt)
    assert ids[:2] == [ids[0]] * 2  # the tokenizer's BOS, then the template's: as the original

    reference = original_squashed_image(grid)
    exact = AutoProcessor.from_pretrained(target, backend="pil")
    pil = exact(text=[prompt], images=[grid], return_tensors="pt")["pixel_values"]
    assert (pil - reference).abs().max() < 1e-5
    one_level = 1 / 255 / min(CLIP_STD) + 1e-5  # the default torchvision resize, within one level
    assert (inputs["pixel_values"] - reference).abs().max() <= one_level

    model, info = LlavaForConditionalGeneration.from_pretrained(target, output_loading_info=True)
    assert not any(info.values()), info
    with torch.no_grad():
        logits = model(**inputs).logits[0]
    original = OriginalModel(source, checkpoint["clip"])
    expected = original.logits(original_input_ids(source, prompt), inputs["pixel_values"])
    vocabulary = expected.shape[-1]
    assert logits.shape == (len(ids), -(-(vocabulary + 2) // 64) * 64)
    assert (logits[:, :vocabulary] - expected).abs().max() < 1e-4
    assert (logits[:, vocabulary:].max(-1).values < logits[:, :vocabulary].max(-1).values).all()


@pytest.mark.parametrize("aspect_ratio", ["anyres", "pad"])
def test_image_preprocessing_follows_process_images(checkpoint, aspect_ratio):
    """anyres: the squashed overview; pad: expand2square in the mean colour, then CLIP's
    shortest-edge resize (mm_utils.py l.155-175). Exact with transformers' PIL backend."""
    from PIL import Image
    from transformers import LlavaImageProcessorPil

    from stages.hand_captions.convert_llava import image_processor_settings
    from stages.hand_captions.llava_original import clip_preprocessing

    image = np.random.default_rng(4).integers(0, 256, (30, 80, 3), dtype=np.uint8)
    settings = image_processor_settings(aspect_ratio, clip_preprocessing(checkpoint["clip"]))
    pixels = LlavaImageProcessorPil(**settings)(images=[image], return_tensors="pt")
    if aspect_ratio == "pad":
        square = Image.new("RGB", (80, 80), tuple(int(x * 255) for x in CLIP_MEAN))
        square.paste(Image.fromarray(image), (0, (80 - 30) // 2))
        image = np.asarray(square)
    assert (pixels["pixel_values"] - original_squashed_image(image)).abs().max() < 1e-5


def test_bin_shards_convert_to_the_same_bytes(checkpoint, tmp_path):
    source = write_original(tmp_path / "original-bin", fmt="bin")
    target = tmp_path / "converted"
    result = convert(source, target, checkpoint["clip"])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in target.iterdir())
    assert names == sorted(p.name for p in checkpoint["target"].iterdir())
    assert "model.safetensors.index.json" in names and "chat_template.jinja" in " ".join(names)
    for name in names:
        assert (target / name).read_bytes() == (checkpoint["target"] / name).read_bytes(), name


def test_a_tower_trained_with_the_model_comes_from_the_checkpoint(checkpoint, tmp_path):
    """unfreeze_mm_vision_tower: the tower exists before the weights load (clip_encoder.py
    l.19-20), so the checkpoint's copy wins over the CLIP folder's."""
    source, target = write_original(tmp_path / "original", unfreeze=True), tmp_path / "converted"
    assert convert(source, target, checkpoint["clip"]).exit_code == 0
    ours, theirs, clip = (weights_of(f) for f in (target, source, checkpoint["clip"]))
    name = "vision_model.encoder.layers.0.mlp.fc1.weight"
    assert ours[f"vision_tower.{name}"].equal(theirs[f"model.vision_tower.vision_tower.{name}"])
    assert not ours[f"vision_tower.{name}"].equal(clip[name])


def test_clear_one_line_errors_and_nothing_left_behind(checkpoint, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    target = tmp_path / "converted"
    result = prep("convert-captioner", checkpoint["source"], target)
    error = result.stderr.strip()
    assert result.exit_code == 1 and len(error.splitlines()) == 1, result.output
    assert "'openai/clip-vit-large-patch14-336'" in error and "--vision-tower DIR" in error
    assert not target.exists() and not list(tmp_path.glob("converted*"))

    result = prep("convert-captioner", checkpoint["source"], checkpoint["target"])
    assert result.exit_code == 1 and "already exists and is not empty" in result.stderr

    other = tmp_path / "llava-hf"
    shutil.copytree(checkpoint["target"], other)
    result = convert(other, tmp_path / "again", checkpoint["clip"])
    assert result.exit_code == 1 and "not 'llava_llama'" in result.stderr


def test_converted_captioner_captions_chunks_through_the_transformers_backend(
    checkpoint, synthetic_hand_clip, tmp_path, monkeypatch
):
    """The chunks reach the model as the original's prompt and image, and the captions are the
    original model's greedy continuation of exactly those inputs."""
    from tokenizers import Tokenizer
    from transformers import LlavaForConditionalGeneration

    calls = []
    generate = LlavaForConditionalGeneration.generate

    def recorded(self, **inputs):
        output = generate(self, **inputs)
        calls.append((inputs["input_ids"], inputs["pixel_values"], output))
        return output

    monkeypatch.setattr(LlavaForConditionalGeneration, "generate", recorded)
    shutil.copy(synthetic_hand_clip, tmp_path / "hand.mp4")
    csv = tmp_path / "clips.csv"
    csv.write_text("id,path,text,language,split\nclip0,hand.mp4,eine hand,de,test\n")
    out = tmp_path / "out"
    flags = ("--captioner", "transformers", "--captioner-model", checkpoint["target"])
    flags += ("--max-new-tokens", 3, "--text-encoder", "none", "--precision", "fp32")
    result = run_generic("hand-captions", csv, out, *flags)
    assert result.exit_code == 0, result.output
    chunks = pq.read_table(out / "hand-captions" / "test.chunks.parquet").to_pylist()
    assert len(chunks) == 3 and len(calls) == 1

    source, (input_ids, pixel_values, output) = checkpoint["source"], calls[0]
    expected_ids = original_input_ids(source, llava_llama_3_prompt(DEFAULT_PROMPT))
    tokenizer = Tokenizer.from_file(str(source / "tokenizer.json"))
    image_token = json.loads((checkpoint["target"] / "config.json").read_text())
    image_token = image_token["image_token_index"]
    stops = {tokenizer.token_to_id(t) for t in ("<|end_of_text|>", "<|eot_id|>")}
    original = OriginalModel(source, checkpoint["clip"])
    for row, chunk in enumerate(chunks):
        assert collapsed(input_ids[row].tolist(), image_token) == expected_ids
        tokens = original.greedy(expected_ids, pixel_values[row : row + 1].float(), 3)
        kept = next((tokens[:i] for i, t in enumerate(tokens) if t in stops), tokens)
        upto = tokens[: len(kept) + 1]  # up to the first end token, if any
        assert output[row, input_ids.shape[1] :].tolist()[: len(upto)] == upto
        assert chunk["text"] == " ".join(tokenizer.decode(kept).split())
        assert chunk["generated_tokens"] == len(kept)
