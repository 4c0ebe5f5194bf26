"""From a unit's chunk captions to its sample rows: each clip's captions joined in time order
(always with their time spans, in ``hand_caption_timed``, and as ``--caption-join`` says for
what is refined and embedded), optionally refined, then embedded whole (``caption_emb``) and
chunk by chunk (``caption_chunks_emb``, one row per chunk caption), with the tokens the encoder
cut counted for both, so that a description cut short is seen, not silently trained on.
"""

from __future__ import annotations

from typing import Any

from pipeline.journal import UnitJournal
from stages.hand_captions.chunking import Chunk, join_captions
from stages.hand_captions.work import ClipWork, journaled_keys


def chunk_row(
    identity: Any, sample_id: str, split: str, chunk: Chunk, text: str, tokens: int
) -> dict[str, Any]:
    """A row of ``<split>.chunks.parquet``: the chunk, its caption and who wrote it."""
    return {
        "id": sample_id,
        "split": split,
        "chunk_index": chunk.index,
        "start_frame": chunk.start_frame,
        "end_frame": chunk.end_frame,
        "start_s": chunk.start_s,
        "end_s": chunk.end_s,
        "text": text,
        "generated_tokens": tokens,
        "backend": identity.backend,
        "model": identity.model,
        "revision": identity.revision,
        "prompt_hash": identity.prompt_hash,
    }


def assemble(
    split: str, clips: list[ClipWork], captions: dict, identity: Any, join: str
) -> tuple[list[dict], list[dict]]:
    """Sample rows (the joined text in ``hand_caption`` and ``hand_caption_raw`` until it is
    refined) and chunk rows, both in clip order, chunks in time order."""
    samples, chunk_rows = [], []
    for work in clips:
        sample_id = work.item["id"]
        found = [captions[(sample_id, c.index)] for c in work.chunks]
        texts = [f["text"] for f in found]
        chunk_rows += [
            chunk_row(identity, sample_id, split, c, f["text"], f["tokens"])
            for c, f in zip(work.chunks, found)
        ]
        joined = join_captions(work.chunks, texts, join)
        samples.append(
            {
                "id": sample_id,
                "split": split,
                "hand_caption": joined,
                "hand_caption_raw": joined,
                "hand_caption_timed": join_captions(work.chunks, texts, "timed"),
                "chunks": len(work.chunks),
            }
        )
    return samples, chunk_rows


def refine_descriptions(
    refiner: Any, samples: list[dict], journal: UnitJournal, batch_size: int
) -> None:
    """Rewrite each joined description with the text LLM, batch by batch, journaled."""
    if refiner is None:
        return
    refined = journaled_keys(journal, "refined")
    todo = [s for s in samples if s["id"] not in refined]
    for begin in range(0, len(todo), batch_size):
        batch = todo[begin : begin + batch_size]
        texts = refiner([s["hand_caption_raw"] for s in batch])
        journal.append({"kind": "refined", "key": s["id"], "text": t} for s, t in zip(batch, texts))
    refined = journaled_keys(journal, "refined")
    for sample in samples:
        sample["hand_caption"] = refined[sample["id"]]["text"]


def embed_descriptions(encoder: Any, samples: list[dict], chunk_rows: list[dict]) -> None:
    """``caption_emb`` of each sample's ``hand_caption`` and ``caption_chunks_emb`` of its chunk
    captions (each embedded alone), with the tokens the encoder cut from each."""
    if encoder is None or not samples:
        return
    whole = encoder([s["hand_caption"] for s in samples])
    pieces = encoder([c["text"] for c in chunk_rows])
    for row, tokens, cut in zip(chunk_rows, pieces.tokens, pieces.cut):
        row["embedded_tokens"], row["embedded_tokens_cut"] = tokens, cut
    by_clip: dict[str, list] = {}
    for row, vector in zip(chunk_rows, pieces.vectors):
        by_clip.setdefault(row["id"], []).append([float(v) for v in vector])
    for sample, vector, tokens, cut in zip(samples, whole.vectors, whole.tokens, whole.cut):
        sample["caption_emb"] = [float(v) for v in vector]
        sample["caption_chunks_emb"] = by_clip[sample["id"]]
        sample["caption_tokens"], sample["caption_tokens_cut"] = tokens, cut


def truncation_figures(samples: list[dict], chunk_rows: list[dict]) -> dict[str, int]:
    """A split's summary figures: clips and chunks whose text the encoder cut, tokens cut."""
    cuts = [s["caption_tokens_cut"] for s in samples if s.get("caption_tokens_cut") is not None]
    if not cuts:
        return {}  # no encoder, nothing embedded
    return {
        "captions_truncated": sum(1 for n in cuts if n > 0),
        "caption_tokens_cut": sum(cuts),
        "chunk_captions_truncated": sum(
            1 for c in chunk_rows if (c.get("embedded_tokens_cut") or 0) > 0
        ),
    }
