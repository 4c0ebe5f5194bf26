"""Optional refinement (BeyondGloss): a local text LLM rewrites each clip's joined description,
keeping hands, handshapes, motion and the time order, dropping background and clothing.

BeyondGloss refines every clip with GPT-4o-mini (elsobhano/BeyondGloss
``sign_video_descriptor/refine.py`` l.39-48: a system message, its prompt with the paragraph in
it, ``max_tokens=1024``); prep runs a local model instead, greedily, so the same inputs give the
same text. ``--refine-prompt beyondgloss`` sends that system message and prompt;
``--refine-max-new-tokens`` is ``max_tokens`` (default: ``--max-new-tokens``).
"""

from __future__ import annotations

from typing import Any

from pipeline.models import locate_model
from stages.hand_captions.generation import greedy_generate, left_padded, load_pretrained
from stages.hand_captions.prompts import prompt_hash, refine_request, resolve_refine_prompt


def refine_token_limit(options: Any) -> int:
    """Longest refinement in new tokens: ``--refine-max-new-tokens``, else ``--max-new-tokens``."""
    limit = options.refine_max_new_tokens
    return options.max_new_tokens if limit is None else limit


class CaptionRefiner:
    def __init__(self, options: Any) -> None:
        self.options = options
        self.location = locate_model(options.refine_model, "refinement model", "--refine-model")
        self.prompt = resolve_refine_prompt(options.refine_prompt)
        self.max_new_tokens = refine_token_limit(options)
        self.identity = {
            "model": options.refine_model,
            "revision": self.location.revision,
            "prompt_hash": prompt_hash(self.prompt.template),
            "system": self.prompt.system,
            "max_new_tokens": self.max_new_tokens,
            "decoding": "greedy",
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
        prompts = [self.chat(refine_request(self.prompt.template, text)) for text in joined]
        inputs = self.tokenizer(
            prompts, padding=True, return_tensors="pt", add_special_tokens=False
        )
        return [
            text
            for text, _tokens in greedy_generate(
                self.model, inputs, self.tokenizer, self.max_new_tokens
            )
        ]

    def chat(self, request: str) -> str:
        """The request in the model's chat template, after the preset's system message; a base
        model (no template) gets the request alone, as its prompt."""
        if self.tokenizer.chat_template is None:
            return request
        messages = [{"role": "user", "content": request}]
        if self.prompt.system is not None:
            messages.insert(0, {"role": "system", "content": self.prompt.system})
        return self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False
        )
