"""VideoLLM captioners: BeyondGloss's prompt over a chunk shown as a grid image or a short video.

``transformers``: any image-text-to-text model transformers knows (Qwen2/2.5-VL, LLaVA-NeXT-Video,
...) from a local folder, with its own processor and chat template; chunks from several clips
go through ``generate`` together. The ``vllm`` backend reuses the prompt building.
"""

from __future__ import annotations

from typing import Any

from pipeline.errors import PrepError
from pipeline.models import locate_model
from stages.hand_captions.captioners import Caption, CaptionerIdentity, ChunkRequest
from stages.hand_captions.generation import greedy_generate, left_padded, load_pretrained
from stages.hand_captions.grid import grid_image
from stages.hand_captions.original_numerics import require_llava_clip, use_original_compute
from stages.hand_captions.prompts import DEFAULT_PROMPT, prompt_hash, resolve_prompt


def chat_messages(mode: str, prompt: str) -> list[dict[str, Any]]:
    """One user turn: the chunk (image or video placeholder) then the prompt."""
    return [
        {
            "role": "user",
            "content": [
                {"type": "image" if mode == "grid" else "video"},
                {"type": "text", "text": prompt},
            ],
        }
    ]


def video_metadata(request: ChunkRequest) -> dict[str, Any]:
    """Frame numbers and fps, so that models with time-aware video input see real timestamps."""
    return {
        "total_num_frames": request.frame_indices[-1] + 1,
        "fps": request.fps,
        "frames_indices": request.frame_indices,
        "width": request.width,
        "height": request.height,
    }


def image_processor(folder: Any, backend: str, reference: str, trust_remote_code: bool = False):
    """``AutoProcessor`` keywords for ``--image-backend``: ``pil`` swaps in transformers' PIL
    image processor, which resizes as BeyondGloss's ``Image.resize`` does (ShareGPT4Video
    mm_utils.py l.142-146); ``torchvision`` keeps transformers' default (its fast processor
    where torchvision is installed), within one grey level of it. Only the image processor:
    video processors have no PIL backend."""
    if backend != "pil":
        return {}
    from transformers import AutoImageProcessor

    try:
        loaded = AutoImageProcessor.from_pretrained(
            folder, local_files_only=True, trust_remote_code=trust_remote_code, backend="pil"
        )
    except (ImportError, ValueError, OSError) as exc:
        raise PrepError(
            f"--image-backend pil: {reference} has no PIL image processor "
            f"({str(exc).splitlines()[0]}); pass --image-backend torchvision"
        ) from None
    return {"image_processor": loaded}


class VisionLanguageCaptioner:
    """What both VideoLLM backends share: the model found offline, the prompt and its hash."""

    backend = "vision-language"
    needs_frames, needs_hands = True, False

    def __init__(self, options: Any) -> None:
        self.options = options
        self.mode = options.captioner_input
        self.location = locate_model(
            options.captioner_model, "captioner model", "--captioner-model"
        )
        self.prompt = resolve_prompt(options.prompt, DEFAULT_PROMPT, "--prompt")
        self.identity = CaptionerIdentity(
            self.backend,
            options.captioner_model,
            self.location.revision,
            prompt_hash(self.prompt),
            self.mode,
        )
        if options.captioner_compute == "original":
            require_llava_clip(self.location.folder, options.captioner_model)
        self.model = self.processor = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "model": None, "processor": None}

    def chat_prompt(self) -> str:
        return self.processor.apply_chat_template(
            chat_messages(self.mode, self.prompt), add_generation_prompt=True, tokenize=False
        )


class TransformersCaptioner(VisionLanguageCaptioner):
    backend = "transformers"

    def load(self) -> None:
        if self.model is not None:
            return
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.processor = AutoProcessor.from_pretrained(
            self.location.folder,
            local_files_only=True,
            trust_remote_code=self.options.trust_remote_code,
            **image_processor(
                self.location.folder,
                self.options.image_backend,
                self.options.captioner_model,
                self.options.trust_remote_code,
            ),
        )
        left_padded(self.processor.tokenizer)
        self.model = load_pretrained(
            AutoModelForImageTextToText,
            self.location,
            self.options,
            "--captioner-model",
            self.options.captioner_precision,
        )
        if self.options.captioner_compute == "original":
            use_original_compute(self.model, self.location.reference)

    def __call__(self, requests: list[ChunkRequest]) -> list[Caption]:
        self.load()
        texts = [self.chat_prompt()] * len(requests)
        if self.mode == "grid":
            inputs = self.processor(
                text=texts,
                images=[grid_image(r.frames) for r in requests],
                padding=True,
                return_tensors="pt",
            )
        else:
            inputs = self.processor(
                text=texts,
                videos=[r.frames for r in requests],
                video_metadata=[video_metadata(r) for r in requests],
                do_sample_frames=False,
                padding=True,
                return_tensors="pt",
            )
        generated = greedy_generate(
            self.model,
            inputs,
            self.processor.tokenizer,
            self.options.max_new_tokens,
            self.options.caption_text,
        )
        return [Caption(text, tokens) for text, tokens in generated]
