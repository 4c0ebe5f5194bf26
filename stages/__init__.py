"""The stage registry: the CLI looks stages up here by name; ``ORDER`` is what ``--stage all`` runs."""

from __future__ import annotations

from stages.features import FeaturesOptions, FeaturesStage
from stages.hand_captions import HandCaptionsOptions, HandCaptionsStage
from stages.manifest import ManifestOptions, ManifestStage
from stages.pseudo_gloss import PseudoGlossOptions, PseudoGlossStage

STAGES = {
    ManifestStage.name: (ManifestStage, ManifestOptions),
    PseudoGlossStage.name: (PseudoGlossStage, PseudoGlossOptions),
    HandCaptionsStage.name: (HandCaptionsStage, HandCaptionsOptions),
    FeaturesStage.name: (FeaturesStage, FeaturesOptions),
}
# hand-captions before features, so captions and their embeddings ride along in the shards
ORDER = [ManifestStage.name, PseudoGlossStage.name, HandCaptionsStage.name, FeaturesStage.name]
