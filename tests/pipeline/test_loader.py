"""The training loader over real shards written by the features stage."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch

from pipeline import synthetic
from pipeline.loader import make_loader
from stages.features.demo import write_tiny_dinov2
from tests.conftest import prep


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Phoenix14T-layout shards of 4 clips each (several shards per split), 4 to 30 frames."""
    base = tmp_path_factory.mktemp("loader")
    model = write_tiny_dinov2(base / "dinov2")
    corpus = synthetic.write_phoenix14t(
        base / "corpus", synthetic.default_samples("de", 30, (4, 30)), size=(40, 48)
    )
    result = prep(
        "run",
        "--stage",
        "features",
        "--dataset",
        "phoenix14t",
        "--root",
        corpus,
        "--out",
        base / "out",
        "--dinov2",
        model,
        "--shard-clips",
        4,
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    return base / "out"


def all_keys(out, split):
    return {
        s["url"]: s["nsamples"]
        for s in json.loads((out / "shards" / split / "index.json").read_text())["shardlist"]
    }


def test_training_batches_are_padded_with_lengths_and_masks(prepared):
    loader = make_loader(prepared, "train", batch_size=4, num_workers=2, shuffle_buffer=8)
    batches = list(loader)
    assert len(batches) == loader.batches_per_epoch == len(loader)
    for batch in batches:
        features, lengths, mask = batch["dinov2"], batch["lengths"], batch["mask"]
        assert (
            features.shape[:2] == mask.shape
            and features.shape[2] == 32
            and features.dtype == torch.float16
        )
        assert mask.sum(1).tolist() == lengths.tolist()
        assert lengths.tolist() == [len(meta["frame_indices"]) for meta in batch["json"]]
        assert torch.all(features[~mask] == 0) and torch.all(features[mask].abs().sum(-1) > 0)


def test_one_training_epoch_covers_every_sample_before_repeating(prepared):
    total = sum(all_keys(prepared, "train").values())
    loader = make_loader(prepared, "train", batch_size=3, num_workers=0, shuffle_buffer=100)
    keys = [k for batch in loader for k in batch["__key__"]]
    assert len(set(keys)) == total and len(keys) - total < 3
    loader.set_epoch(1)
    again = [k for batch in loader for k in batch["__key__"]]
    assert set(again) == set(keys) and again != keys  # reshuffled


def test_training_epoch_length_is_equal_across_ranks(prepared):
    lengths = [
        sum(
            1
            for _ in make_loader(
                prepared, "train", batch_size=2, num_workers=1, rank=r, world_size=3
            )
        )
        for r in range(3)
    ]
    assert len(set(lengths)) == 1 and lengths[0] > 0


def test_evaluation_sees_each_sample_exactly_once_across_ranks_and_workers(prepared):
    seen = Counter()
    for rank in range(2):
        loader = make_loader(
            prepared, "dev", batch_size=2, train=False, num_workers=2, rank=rank, world_size=2
        )
        seen.update(k for batch in loader for k in batch["__key__"])
    assert sum(all_keys(prepared, "dev").values()) == len(seen) and set(seen.values()) == {1}


def test_bucketing_puts_similar_lengths_together(prepared):
    def spread(bucket_buffer):
        loader = make_loader(
            prepared, "train", batch_size=4, train=False, num_workers=0, bucket_buffer=bucket_buffer
        )
        return sum(int(b["lengths"].max() - b["lengths"].min()) for b in loader)

    assert spread(1000) < spread(0)


def full_clips(prepared, split):
    """Every clip's stored dinov2 frames by key, read once without sampling."""
    loader = make_loader(prepared, split, batch_size=1, train=False, num_workers=0)
    return {b["__key__"][0]: b["dinov2"][0, : b["lengths"][0]] for b in loader}


def test_sign2gpt_frame_sampling_is_redrawn_every_epoch(prepared):
    """frame_stride=2, random_shift=4: every second frame from a start in 0-3 to an end trimmed
    by 0-4 frames (Sign2GPT's training input), drawn again in each epoch."""
    stored = full_clips(prepared, "train")
    loader = make_loader(
        prepared,
        "train",
        batch_size=4,
        num_workers=0,
        shuffle_buffer=1,
        frame_stride=2,
        random_shift=4,
    )
    windows = Counter()
    for epoch in range(3):
        loader.set_epoch(epoch)
        for batch in loader:
            for row, key in enumerate(batch["__key__"]):
                length = int(batch["lengths"][row])
                positions = batch["frame_positions"][row, :length].tolist()
                frames = len(stored[key])
                start, last = positions[0], positions[-1]
                assert 0 <= start <= 3 and frames - 4 <= last + 2 and last < frames
                assert positions == list(range(start, last + 1, 2))
                assert torch.equal(batch["dinov2"][row, :length], stored[key][positions])
                windows[(key, start, last)] += 1
    starts = {start for _key, start, _last in windows}
    assert starts == {0, 1, 2, 3}  # 3 epochs x 15+ clips: every start drawn


def test_evaluation_keeps_the_stride_from_the_first_frame(prepared):
    stored = full_clips(prepared, "dev")
    loader = make_loader(prepared, "dev", batch_size=2, train=False, num_workers=0, frame_stride=2)
    for batch in loader:
        for row, key in enumerate(batch["__key__"]):
            expected = list(range(0, len(stored[key]), 2))
            length = int(batch["lengths"][row])
            assert batch["frame_positions"][row, :length].tolist() == expected
            assert torch.equal(batch["dinov2"][row, :length], stored[key][expected])
