"""Finding a model offline: a ``save_pretrained`` folder, or a Hugging Face id already in the
local cache. Never downloads; a missing model is an error that says what to place where."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import PrepError

SINGLE_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
SHARD_INDEX = "model.safetensors.index.json"  # a checkpoint split into several files
WEIGHT_FILES = (*SINGLE_WEIGHT_FILES, SHARD_INDEX)


@dataclass(frozen=True)
class ModelLocation:
    """Where a model was found offline, and the revision it is recorded under."""

    reference: str  # what the user gave: a folder or a Hugging Face id
    folder: Path
    revision: str


def locate_model(reference: str, what: str, flag: str) -> ModelLocation:
    """A local folder, or a Hugging Face id already in the local cache; never downloads."""
    folder = Path(reference).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise PrepError(
                f"{what} folder {folder} has no config.json; pass a folder written by save_pretrained"
            )
        return ModelLocation(reference, folder.resolve(), weights_digest(folder))
    from huggingface_hub import constants, snapshot_download

    try:
        snapshot = Path(snapshot_download(reference, local_files_only=True))
    except Exception:  # not cached, or not a valid id: the same advice applies
        raise PrepError(
            f"{what} {reference!r} is not available offline: on a machine with internet run "
            f"`huggingface-cli download {reference}` and copy the folder here, then pass {flag} /that/folder "
            f"(or copy the Hugging Face cache to {constants.HF_HUB_CACHE})"
        ) from None
    return ModelLocation(reference, snapshot, snapshot.name)


def weights_digest(folder: Path) -> str:
    """A local folder has no hub revision: the sha256 of its weights names it instead. Sharded
    checkpoints (tens of GB) are named by their index plus each shard's name and size."""
    for name in SINGLE_WEIGHT_FILES:
        if (folder / name).is_file():
            return f"sha256:{file_sha256(folder / name)[:16]}"
    index = folder / SHARD_INDEX
    if index.is_file():
        digest = hashlib.sha256(index.read_bytes())
        for shard in sorted(folder.glob("*.safetensors")):
            digest.update(f"{shard.name}:{shard.stat().st_size}".encode())
        return f"sha256:{digest.hexdigest()[:16]}"
    return "unknown"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()
