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


def sign2gpt_training_loader(prepared, **options):
    """Sign2GPT's training frame sampling over the train split, samples in stream order."""
    return make_loader(
        prepared,
        "train",
        batch_size=4,
        num_workers=0,
        shuffle_buffer=1,
        frame_stride=2,
        random_shift=4,
        **options,
    )


def test_sign2gpt_frame_sampling_is_redrawn_every_epoch(prepared):
    """frame_stride=2, random_shift=4: every second frame from a start in 0-3 to an end trimmed
    by 0-4 frames (Sign2GPT's training input), drawn again in each epoch."""
    stored = full_clips(prepared, "train")
    loader = sign2gpt_training_loader(prepared)
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


def batch_positions(batch):
    """Each row's key and frame positions, without padding."""
    for row, key in enumerate(batch["__key__"]):
        yield row, key, batch["frame_positions"][row, : int(batch["lengths"][row])].tolist()


def test_max_frames_keeps_a_random_sorted_subset_redrawn_every_epoch(prepared):
    """max_frames (Sign2GPT's max_seq_len) on top of its stride window: windows longer than the
    cap keep a random sorted subset of their own positions, drawn again in each epoch."""
    stored = full_clips(prepared, "train")
    loader = sign2gpt_training_loader(prepared, max_frames=5)
    subsets = {}
    for epoch in range(3):
        loader.set_epoch(epoch)
        for batch in loader:
            for row, key, positions in batch_positions(batch):
                # a window of a 20+ frame clip has at least 7 frames (start <= 3, end >= n - 4)
                assert len(positions) == 5 if len(stored[key]) >= 20 else len(positions) <= 5
                assert positions == sorted(set(positions)) and positions[-1] < len(stored[key])
                assert len({p % 2 for p in positions}) == 1  # all from one stride-2 window
                assert torch.equal(batch["dinov2"][row, : len(positions)], stored[key][positions])
                subsets.setdefault(key, set()).add(tuple(positions))
    long_clips = [key for key, clip in stored.items() if len(clip) >= 20]
    assert long_clips and all(len(subsets[key]) > 1 for key in long_clips)


def test_max_frames_in_evaluation_is_the_same_subset_every_time(prepared):
    stored = full_clips(prepared, "dev")

    def evaluation():
        loader = make_loader(
            prepared, "dev", batch_size=2, train=False, num_workers=0, max_frames=6
        )
        return {key: positions for b in loader for _row, key, positions in batch_positions(b)}

    first = evaluation()
    assert first == evaluation()
    for key, positions in first.items():
        assert len(positions) == min(6, len(stored[key]))
        assert positions == sorted(set(positions)) and set(positions) <= set(
            range(len(stored[key]))
        )
    assert any(
        len(stored[key]) > 6 and positions != list(range(6)) for key, positions in first.items()
    )
    with pytest.raises(ValueError, match="max_frames"):
        make_loader(prepared, "dev", train=False, num_workers=0, max_frames=0)
