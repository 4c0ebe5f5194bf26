"""``prep doctor`` checks of the pseudo-gloss stage: the spaCy pipelines present, the offline
taggers used without one, and what the prototypes are built from.

Pipelines are judged from their files alone (no spaCy pipeline is built): placeholder packages
squatting on spaCy's pipeline names install fine but hold no pipeline, and a run would only
find out when loading it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import manifests
from pipeline.doctor import Check, package_folder, package_version

SPACY_PIPELINES = {
    "de": ("de_core_news_sm", "de_core_news_md", "de_core_news_lg", "de_dep_news_trf"),
    "zh": ("zh_core_web_sm", "zh_core_web_md", "zh_core_web_lg", "zh_core_web_trf"),
}


def dataset_languages(dataset: str | None) -> tuple[str, ...]:
    """The languages a dataset's text is in, from its descriptor; a dataset without one
    (generic: each row names its language) or not known by name may be any of them."""
    try:
        language = manifests.load_descriptor(dataset).language if dataset else None
    except KeyError:
        language = None
    return (language,) if language in SPACY_PIPELINES else tuple(SPACY_PIPELINES)


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
    """The offline default of a language: its model files ship inside the package, so the
    package's folder is looked into rather than imported."""
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


def prototypes_check(vectors: str | None, needed: bool) -> Check:
    """Prototypes come from given fastText vectors, or from skipgram vectors trained on the
    corpus; either way the fasttext package is needed."""
    fasttext = package_version("fasttext")
    if vectors:
        path = Path(vectors).expanduser()
        return Check(
            "pseudo-gloss",
            "prototypes",
            path.is_file() and fasttext is not None,
            f"fastText vectors {path}",
            needed,
            f"place cc.<lang>.300.bin (with subwords) or a .vec file at {path}, or drop --fasttext "
            "to train skipgram vectors on the corpus; needs `pip install fasttext`",
        )
    return Check(
        "pseudo-gloss",
        "prototypes",
        fasttext is not None,
        f"skipgram trained on the train split (fasttext {fasttext})",
        needed,
        "pip install fasttext",
    )


def doctor_checks(options: Mapping[str, Any], needed: bool) -> list[Check]:
    """The stage's checks: installed pipelines (both languages, for information), then the one
    the run would use (``--spacy-model`` or the dataset's offline defaults), then prototypes."""
    checks = spacy_checks(tuple(SPACY_PIPELINES))
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
        languages = dataset_languages(options["dataset"])
        checks += [offline_tagger_check(language, needed) for language in languages]
    checks.append(prototypes_check(options["fasttext"], needed))
    return checks
