"""Optional refinement (BeyondGloss): a local text LLM rewrites each clip's joined description,
keeping hands, handshapes, motion and the time order, dropping background and clothing."""

from __future__ import annotations

from typing import Any

from pipeline.models import locate_model
from stages.hand_captions.generation import greedy_generate, left_padded, load_pretrained
from stages.hand_captions.prompts import (
    DEFAULT_REFINE_PROMPT,
    prompt_hash,
    refine_request,
    resolve_prompt,
)


class CaptionRefiner:
    def __init__(self, options: Any) -> None:
        self.options = options
        self.location = locate_model(options.refine_model, "refinement model", "--refine-model")
        self.template = resolve_prompt(
            options.refine_prompt, DEFAULT_REFINE_PROMPT, "--refine-prompt"
        )
        self.identity = {
            "model": options.refine_model,
            "revision": self.location.revision,
            "prompt_hash": prompt_hash(self.template),
        }
        self.model = self.tokenizer = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "model": None, "tokenizer": None}

    def load(self) -> None:
        if self.model is None:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            self.tokenizer = left_padded(
                AutoTokenizer.from_pretrained(
                    self.location.folder,
                    local_files_only=True,
                    trust_remote_code=self.options.trust_remote_code,
                )
            )
            self.model = load_pretrained(
                AutoModelForCausalLM, self.location, self.options, "--refine-model"
            )

    def __call__(self, joined: list[str]) -> list[str]:
        self.load()
        prompts = [self.chat(refine_request(self.template, text)) for text in joined]
        inputs = self.tokenizer(
            prompts, padding=True, return_tensors="pt", add_special_tokens=False
        )
        return [
            text
            for text, _tokens in greedy_generate(
                self.model, inputs, self.tokenizer, self.options.max_new_tokens
            )
        ]

    def chat(self, request: str) -> str:
        if self.tokenizer.chat_template is None:  # a base model: the request is the prompt
            return request
        messages = [{"role": "user", "content": request}]
        return self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False
        )
