"""The ``vllm`` captioner for GPU clusters: the same prompts through vLLM's offline engine, which
batches continuously. Optional (``pip install vllm``); the test suite does not run it."""

from __future__ import annotations

import importlib.util

from pipeline.errors import PrepError
from stages.hand_captions.captioners import Caption, ChunkRequest
from stages.hand_captions.generation import kept_text
from stages.hand_captions.grid import grid_image
from stages.hand_captions.vlm import VisionLanguageCaptioner


class VllmCaptioner(VisionLanguageCaptioner):
    backend = "vllm"

    def __init__(self, options) -> None:
        if importlib.util.find_spec("vllm") is None:
            raise PrepError(
                "--captioner vllm needs vLLM on a GPU machine: pip install vllm; or use --captioner transformers"
            )
        if options.captioner_compute == "original" or options.image_backend == "pil":
            raise PrepError(
                "--captioner-compute original and --image-backend pil need --captioner "
                "transformers: vLLM runs its own kernels and image processing (pass "
                "--captioner-compute auto --image-backend torchvision to accept captions that "
                "part from the original's in fp16)"
            )
        super().__init__(options)
        self.engine = self.sampling = None

    def __getstate__(self) -> dict:
        return {**super().__getstate__(), "engine": None, "sampling": None}

    def load(self) -> None:
        if self.engine is not None:
            return
        from transformers import AutoProcessor
        from vllm import LLM, SamplingParams

        self.processor = AutoProcessor.from_pretrained(
            self.location.folder,
            local_files_only=True,
            trust_remote_code=self.options.trust_remote_code,
        )
        modality = "image" if self.mode == "grid" else "video"
        self.engine = LLM(
            model=str(self.location.folder),
            trust_remote_code=self.options.trust_remote_code,
            limit_mm_per_prompt={modality: 1},
            seed=0,
        )
        self.sampling = SamplingParams(temperature=0.0, max_tokens=self.options.max_new_tokens)

    def __call__(self, requests: list[ChunkRequest]) -> list[Caption]:
        from PIL import Image

        self.load()
        prompt = self.chat_prompt()
        if self.mode == "grid":
            inputs = [
                {
                    "prompt": prompt,
                    "multi_modal_data": {"image": Image.fromarray(grid_image(r.frames))},
                }
                for r in requests
            ]
        else:
            inputs = [{"prompt": prompt, "multi_modal_data": {"video": r.frames}} for r in requests]
        outputs = self.engine.generate(inputs, self.sampling, use_tqdm=False)
        return [
            Caption(
                kept_text(o.outputs[0].text, self.options.caption_text), len(o.outputs[0].token_ids)
            )
            for o in outputs
        ]
