"""The stage registry: the CLI looks stages up here by name; ``ORDER`` is what ``--stage all`` runs."""

from __future__ import annotations

from stages.features import FeaturesOptions, FeaturesStage
from stages.manifest import ManifestOptions, ManifestStage
from stages.pseudo_gloss import PseudoGlossOptions, PseudoGlossStage

STAGES = {
    ManifestStage.name: (ManifestStage, ManifestOptions),
    PseudoGlossStage.name: (PseudoGlossStage, PseudoGlossOptions),
    FeaturesStage.name: (FeaturesStage, FeaturesOptions),
}
ORDER = [ManifestStage.name, PseudoGlossStage.name, FeaturesStage.name]
