"""The CLI contract: exit statuses, one-line reasons, config files, help."""

import subprocess
import sys

from tests.conftest import REPO, manifest_rows, prep


def run(*args):
    return prep("run", "--stage", "manifest", *args)


def test_unusable_input_exits_1_with_one_line(tmp_path, phoenix_root):
    cases = {
        "missing root": run(
            "--dataset", "phoenix14t", "--root", tmp_path / "nope", "--out", tmp_path / "o"
        ),
        "layout": run("--dataset", "phoenix14t", "--root", tmp_path, "--out", tmp_path / "o"),
        "csl layout": run("--dataset", "csl-daily", "--root", tmp_path, "--out", tmp_path / "o"),
        "generic folder": run("--dataset", "generic", "--root", tmp_path, "--out", tmp_path / "o"),
        "dataset": run("--dataset", "wlasl", "--root", tmp_path, "--out", tmp_path / "o"),
        "stage": prep(
            "run",
            "--stage",
            "glosses",
            "--dataset",
            "phoenix14t",
            "--root",
            phoenix_root,
            "--out",
            tmp_path / "o",
        ),
        "required": prep("run", "--stage", "manifest", "--dataset", "phoenix14t"),
    }
    for name, result in cases.items():
        assert result.exit_code == 1, (name, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("prep: error: "), (name, lines)
    assert "layout not recognised" in cases["layout"].stderr
    assert (
        "--out is required" in cases["required"].stderr
        or "--root is required" in cases["required"].stderr
    )


def test_nothing_to_do_exits_1(tmp_path):
    manual = tmp_path / "PHOENIX-2014-T" / "annotations" / "manual"
    manual.mkdir(parents=True)
    (manual / "PHOENIX-2014-T.dev.corpus.csv").write_text(
        "name|video|start|end|speaker|orth|translation\n"
    )
    result = run("--dataset", "phoenix14t", "--root", tmp_path, "--out", tmp_path / "o")
    assert result.exit_code == 1 and "nothing to do" in result.stderr


def test_config_file_toml_and_yaml_flags_win(tmp_path, phoenix_root):
    out = tmp_path / "out"
    toml = tmp_path / "prep.toml"
    toml.write_text(
        f'stage = "manifest"\ndataset = "phoenix14t"\nroot = "{phoenix_root}"\nout = "{out}"\nmax-frames = 4\n'
    )
    result = prep("run", "--config", toml, "--max-frames", "6")
    assert result.exit_code == 0, result.output
    from pipeline.manifest import read_provenance

    assert read_provenance(out / "manifest" / "dev.parquet")["frame_selection"]["max_frames"] == 6
    yaml_file = tmp_path / "prep.yaml"
    yaml_file.write_text(
        f"stage: manifest\ndataset: phoenix14t\nroot: {phoenix_root}\nout: {tmp_path / 'y'}\nmin_frames: 13\n"
    )
    assert (
        prep("run", "--config", yaml_file).exit_code == 1
    )  # every clip has 12 frames < 13: all quarantined
    assert manifest_rows(tmp_path / "y", "dev") == []  # the outputs are still written
    yaml_file.write_text(yaml_file.read_text() + "max-quarantine-share: 1\n")
    assert prep("run", "--config", yaml_file).exit_code == 0
    bad = tmp_path / "bad.toml"
    bad.write_text('stage = "manifest"\nframes_per_second = 3\nworkerz = 2\n')
    result = prep("run", "--config", bad)
    assert result.exit_code == 1 and "frames_per_second, workerz" in result.stderr


def test_help_explains_every_option():
    for args in ([], ["run"], ["synth"], ["demo"]):
        result = prep(*args, "--help")
        assert result.exit_code == 0
    text = prep("run", "--help").stdout
    for option in (
        "--stage",
        "--dataset",
        "--root",
        "--out",
        "--config",
        "--rank",
        "--world-size",
        "--overwrite",
        "--quiet",
        "--frame-step",
        "--max-frames",
        "--sampling",
        "--deep-check",
    ):
        assert option in text, option


def test_console_script_and_demo_run_end_to_end(tmp_path):
    prep_bin = REPO / ".venv" / "bin" / "prep"
    command = [str(prep_bin)] if prep_bin.exists() else [sys.executable, "-m", "pipeline.cli"]
    result = subprocess.run(
        [*command, "demo", "--out", str(tmp_path / "demo"), "--clips", "5"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert (
        "outputs:" in result.stdout
        and (tmp_path / "demo" / "prepared" / "manifest" / "train.parquet").is_file()
    )


def test_stage_option_values_are_checked_where_they_are_declared(phoenix_root, tmp_path):
    """``option(min=, max=, choices=)`` on the options dataclass: a flag, a config file and
    the constructed options are held to the same rule, before any work starts."""
    out = tmp_path / "out"
    where = ["--dataset", "phoenix14t", "--root", phoenix_root, "--out", out, "--quiet"]
    pooling = prep("run", "--stage", "features", *where, "--dinov2-pooling", "max")
    assert pooling.exit_code == 1 and "Traceback" not in pooling.output
    assert (
        "invalid options for stage features: --dinov2-pooling must be one of cls, patch-mean, "
        "cls+patch-mean, got 'max'" in pooling.output
    )
    assert not out.exists()
    config = tmp_path / "prep.toml"
    config.write_text("jpeg_quality = 101\n")
    quality = prep("run", "--stage", "features", *where, "--config", config)
    assert quality.exit_code == 1 and "config key jpeg_quality" in quality.output
    batch = prep("run", "--stage", "features", *where, "--batch-size", 0)
    assert batch.exit_code != 0 and not out.exists()
    for stage, flag, value, said in (  # each built-in stage's rules live in its dataclass
        ("pseudo-gloss", "--max-gloss-share", 0, "--max-gloss-share must be in (0, 1], got 0.0"),
        ("hand-captions", "--caption-join", "joined", "--caption-join must be one of timed, plain"),
        ("hand-captions", "--chunk-stride", 0, "--chunk-stride: expected at least 1, got 0"),
        ("manifest", "--sampling", "random", "sampling must be one of"),
    ):
        result = prep("run", "--stage", stage, *where, flag, value)
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        assert said in result.output.strip().splitlines()[-1], (flag, result.output)
        assert not out.exists()
