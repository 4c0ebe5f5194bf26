"""The stage registry: the CLI looks stages up here by name; ``ORDER`` is what ``--stage all`` runs."""

from __future__ import annotations

from stages.manifest import ManifestOptions, ManifestStage

STAGES = {
    ManifestStage.name: (ManifestStage, ManifestOptions),
}
ORDER = [ManifestStage.name]
