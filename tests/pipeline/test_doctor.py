"""``prep doctor``: what is available here, and exit 1 naming each missing piece of the chosen configuration."""

from __future__ import annotations

import importlib.metadata
import re

import torch

from tests.conftest import prep


def row(output: str, area: str, component: str) -> tuple[str, str]:
    """(status, detail) of one line of the doctor table."""
    match = re.search(
        rf"^{re.escape(area)}\s+{re.escape(component)}\s+(\S+)\s+(.*)$", output, re.MULTILINE
    )
    assert match, f"no row {area} {component} in:\n{output}"
    return match.group(1), match.group(2)


def missing_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("prep: missing:")]


def test_a_configuration_that_can_run_exits_0_and_lists_versions(
    tmp_path, tiny_dinov2, phoenix_template
):
    config = tmp_path / "prep.toml"
    config.write_text(
        f'stage = "all"\ndataset = "phoenix14t"\nroot = "{phoenix_template}"\n'
        f'out = "{tmp_path / "out"}"\ndinov2 = "{tiny_dinov2}"\ncaptioner = "kinematic"\n'
    )
    result = prep("doctor", "--config", config)
    assert result.exit_code == 0, result.output
    assert missing_lines(result) == []
    assert "manifest, pseudo-gloss, hand-captions, features: can run" in result.stdout
    for library in ("torch", "numpy", "pyarrow", "transformers", "spacy", "av", "webdataset"):
        assert row(result.stdout, "library", library) == ("ok", importlib.metadata.version(library))
    status, decoders = row(result.stdout, "video", "decoders")
    assert status == "ok" and {"h264", "av1", "vp9"} <= set(decoders.split(" (not")[0].split(", "))
    assert row(result.stdout, "features", "DINOv2")[0] == "ok" and str(tiny_dinov2) in result.stdout
    assert row(result.stdout, "manifest", "--root") == ("ok", str(phoenix_template))
    assert row(result.stdout, "pseudo-gloss", "de pipeline")[0] == "ok"
    assert row(result.stdout, "hand-captions", "MediaPipe Hands")[0] == "ok"
    assert row(result.stdout, "features", "HaMeR")[0] == "-"  # not asked for
    device, _ = row(result.stdout, "device", "device")
    assert device == "ok" and not (tmp_path / "out").exists()  # doctor writes nothing


def test_a_missing_dinov2_folder_exits_1_and_says_what_to_place_where(tmp_path):
    absent = tmp_path / "models" / "dinov2-small"
    result = prep("doctor", "--stage", "features", "--dinov2", absent)
    assert result.exit_code == 1
    assert row(result.stdout, "features", "DINOv2") == ("MISSING", f"no folder at {absent}")
    assert "features: cannot run (1 missing)" in result.stdout
    [line] = missing_lines(result)
    assert line.startswith(
        "prep: missing: features DINOv2: place a DINOv2 folder written by save_pretrained"
    )
    assert f"at {absent}" in line and "--dinov2" in line


def test_a_dinov2_folder_without_weights_is_missing(tmp_path):
    folder = tmp_path / "dinov2"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    result = prep("doctor", "--stage", "features", "--dinov2", folder)
    assert result.exit_code == 1
    assert row(result.stdout, "features", "DINOv2") == ("MISSING", f"{folder} (no weights)")


def test_a_missing_hamer_file_exits_1_naming_it(tmp_path, tiny_dinov2, tiny_hamer):
    absent = tmp_path / "hamer.ckpt"
    result = prep(
        "doctor",
        "--stage",
        "features",
        "--features",
        "dinov2,hands,hamer",
        "--dinov2",
        tiny_dinov2,
        "--hamer",
        absent,
    )
    assert result.exit_code == 1
    assert row(result.stdout, "features", "HaMeR") == ("MISSING", f"{absent} (no such file)")
    [line] = missing_lines(result)
    assert line.startswith("prep: missing: features HaMeR: place HaMeR's hamer.ckpt")
    assert line.endswith(f"at {absent}")

    result = prep("doctor", "--stage", "features", "--features", "hamer", "--dinov2", tiny_dinov2)
    assert result.exit_code == 1
    [line] = missing_lines(result)
    assert "features HaMeR" in line and "--hamer /path/to/hamer.ckpt" in line

    checkpoint, config = tiny_hamer
    result = prep(
        "doctor",
        "--stage",
        "features",
        "--features",
        "dinov2,hamer",
        "--dinov2",
        tiny_dinov2,
        "--hamer",
        checkpoint,
        "--hamer-config",
        config,
    )
    assert result.exit_code == 0, result.output
    assert row(result.stdout, "features", "HaMeR")[0] == "ok"
    assert row(result.stdout, "features", "HaMeR config")[0] == "ok"


def test_a_placeholder_spacy_package_is_not_a_pipeline(tmp_path, monkeypatch):
    """Packages squatting on spaCy's pipeline names (version 999.9.9, no pipeline data) count as
    unavailable; a folder written by ``nlp.to_disk`` is usable."""
    site = tmp_path / "site"
    (site / "de_core_news_sm").mkdir(parents=True)
    (site / "de_core_news_sm" / "__init__.py").write_text("")
    info = site / "de_core_news_sm-999.9.9.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: de_core_news_sm\nVersion: 999.9.9\n"
    )
    monkeypatch.syspath_prepend(str(site))
    result = prep(
        "doctor",
        "--stage",
        "pseudo-gloss",
        "--dataset",
        "phoenix14t",
        "--spacy-model",
        "de_core_news_sm",
    )
    assert result.exit_code == 1
    status, detail = row(result.stdout, "pseudo-gloss", "--spacy-model")
    assert status == "MISSING" and "999.9.9 holds no pipeline data" in detail
    assert (
        "unusable de_core_news_sm" in row(result.stdout, "pseudo-gloss", "spaCy pipelines (de)")[1]
    )
    [line] = missing_lines(result)
    assert line.startswith("prep: missing: pseudo-gloss --spacy-model: install the pipeline")

    import spacy

    spacy.blank("de").to_disk(tmp_path / "blank-de")
    result = prep(
        "doctor",
        "--stage",
        "pseudo-gloss",
        "--dataset",
        "phoenix14t",
        "--spacy-model",
        tmp_path / "blank-de",
    )
    assert result.exit_code == 0, result.output
    assert row(result.stdout, "pseudo-gloss", "--spacy-model")[0] == "ok"


def test_video_llm_captioner_needs_a_local_model(tmp_path):
    result = prep(
        "doctor",
        "--stage",
        "hand-captions",
        "--captioner",
        "transformers",
        "--captioner-model",
        tmp_path / "qwen",
    )
    assert result.exit_code == 1
    [line] = missing_lines(result)
    assert (
        line.startswith("prep: missing: hand-captions VideoLLM: no folder at")
        and "--captioner-model" in line
    )
    model = tmp_path / "qwen"
    model.mkdir()
    (model / "config.json").write_text("{}")
    result = prep(
        "doctor",
        "--stage",
        "hand-captions",
        "--captioner",
        "transformers",
        "--captioner-model",
        model,
    )
    assert result.exit_code == 0, result.output
    assert row(result.stdout, "hand-captions", "VideoLLM")[0] == "ok"


def test_a_cuda_device_is_checked_against_what_torch_sees(tiny_dinov2):
    result = prep("doctor", "--stage", "features", "--dinov2", tiny_dinov2, "--device", "cuda")
    if torch.cuda.is_available():
        assert result.exit_code == 0 and row(result.stdout, "device", "device")[0] == "ok"
    else:
        assert result.exit_code == 1
        [line] = missing_lines(result)
        assert "torch sees no CUDA device" in line and "--device cpu" in line
