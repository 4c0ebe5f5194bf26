"""CSL-Daily's label pickle is untrusted: code in it must never run."""

import pickle

import numpy as np
import pytest

from pipeline.errors import PrepError
from pipeline.unpickle import load_data_pickle
from tests.conftest import prep


class Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_plain_data_and_numpy_arrays_load(tmp_path):
    path = tmp_path / "labels.pkl"
    value = {"info": [{"name": "a", "length": np.int64(3), "arr": np.arange(4)}], "s": {1, 2}}
    path.write_bytes(pickle.dumps(value))
    loaded = load_data_pickle(path)
    assert loaded["info"][0]["length"] == 3 and loaded["info"][0]["arr"].tolist() == [0, 1, 2, 3]


def test_code_executing_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "labels.pkl"
    path.write_bytes(pickle.dumps({"info": [Exploit(str(marker))]}))
    with pytest.raises(PrepError, match=r"refused to load (builtins|io)\.open"):
        load_data_pickle(path)
    assert not marker.exists()


def test_csl_daily_with_malicious_label_pickle_fails_cleanly(csl_root, tmp_path):
    marker = tmp_path / "pwned"
    labels = csl_root / "sentence_label" / "csl2020ct_v2.pkl"
    labels.write_bytes(pickle.dumps({"info": [Exploit(str(marker))]}))
    result = prep(
        "run",
        "--stage",
        "manifest",
        "--dataset",
        "csl-daily",
        "--root",
        csl_root,
        "--out",
        tmp_path / "o",
    )
    assert result.exit_code == 1 and "unsafe pickle" in result.stderr
    assert not marker.exists()
