"""Safe by default: nothing reaches the network, no pickled or remote code runs, annotation
paths stay inside the dataset root and outputs inside ``--out``."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from pipeline import manifest as m
from pipeline.execution import all_defaults
from tests.conftest import REPO, manifest_rows, prep, quarantine_rows, run_generic

SOURCE_FOLDERS = ("pipeline", "stages", "exporters", "manifests", "bench")


def source_calls():
    for folder in SOURCE_FOLDERS:
        for path in sorted((REPO / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
                if isinstance(node, ast.Call):
                    yield f"{path.relative_to(REPO)}:{node.lineno}", node


def dotted(node: ast.AST) -> str:
    return ast.unparse(node)


def keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def is_constant(node: ast.expr | None, value: object) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def call_problems(where: str, call: ast.Call) -> list[str]:
    problems = []
    name = dotted(call.func)
    if name in ("torch.load", "pickle.load", "pickle.loads", "yaml.load", "yaml.unsafe_load"):
        problems.append(f"{where}: {name}( (use pipeline.unpickle or yaml.safe_load)")
    if is_constant(keyword(call, "weights_only"), False) or is_constant(
        keyword(call, "allow_pickle"), True
    ):
        problems.append(f"{where}: {name}( with weights_only=False or allow_pickle=True")
    trust = keyword(call, "trust_remote_code")
    if (
        trust is not None
        and not is_constant(trust, False)
        and "trust_remote_code" not in dotted(trust)
    ):
        problems.append(
            f"{where}: trust_remote_code={dotted(trust)} (only False or the user's option)"
        )
    if name.endswith(".from_pretrained"):
        if not is_constant(keyword(call, "local_files_only"), True):
            problems.append(f"{where}: {name}( without local_files_only=True")
        receiver = name.rsplit(".", 2)[-2]
        if (receiver.startswith("Auto") or receiver[0].islower()) and trust is None:
            problems.append(
                f"{where}: {name}( of an Auto class without an explicit trust_remote_code"
            )
    return problems


def test_source_never_unpickles_code_downloads_or_trusts_remote_code():
    calls = list(source_calls())
    assert (
        len(calls) > 1000
        and sum(dotted(c.func).endswith(".from_pretrained") for _, c in calls) >= 3
    )
    assert [p for where, call in calls for p in call_problems(where, call)] == []
    assert all_defaults()["trust_remote_code"] is False
    unsafe = """torch.load(f, weights_only=False); pickle.loads(b); AutoModel.from_pretrained(p)
AutoTokenizer.from_pretrained(p, local_files_only=True, trust_remote_code=True); np.load(f, allow_pickle=True)"""
    found = [
        p
        for node in ast.walk(ast.parse(unsafe))
        if isinstance(node, ast.Call)
        for p in call_problems("x", node)
    ]
    assert len(found) == 7  # the checks catch what they are meant to


OFFLINE_PROBE = """import os, sys
from pipeline.cli import main
sys.argv = ["prep", "--help"]
try:
    main()
except SystemExit:
    pass
import huggingface_hub.constants
print(os.environ.get("HF_HUB_OFFLINE"), os.environ.get("TRANSFORMERS_OFFLINE"), huggingface_hub.constants.HF_HUB_OFFLINE)
"""


def offline_probe(**env: str) -> list[str]:
    clean = {
        k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    }
    result = subprocess.run(
        [sys.executable, "-c", OFFLINE_PROBE],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**clean, **env},
        timeout=120,
        check=True,
    )
    return result.stdout.split("\n")[-2].split()


def test_cli_start_makes_hugging_face_offline_unless_the_user_chose():
    assert offline_probe() == ["1", "1", "True"]
    assert offline_probe(HF_HUB_OFFLINE="0") == ["0", "1", "False"]


NETWORK_GUARD = """import pathlib, socket
MARKER = pathlib.Path(__file__).with_name("network_used")
def refuse(what):
    with open(MARKER, "a") as handle:
        handle.write(what + "\\n")
    raise OSError("network access refused by the test")
def guarded(real):
    def call(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            refuse(f"{real.__name__} {address}")
        return real(self, address)
    return call
socket.socket.connect = guarded(socket.socket.connect)
socket.socket.connect_ex = guarded(socket.socket.connect_ex)
socket.getaddrinfo = lambda host, *args, **kwargs: refuse(f"getaddrinfo {host}")
"""


def guarded_run(guard: Path, command: list[object]) -> subprocess.CompletedProcess:
    """``command`` with every internet connection refused and recorded in ``guard``,
    Hugging Face's offline switches unset and an empty Hugging Face cache."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    }
    env.update(PYTHONPATH=os.pathsep.join([str(guard), str(REPO)]), HF_HOME=str(guard / "hf"))
    return subprocess.run(
        list(map(str, command)), capture_output=True, text=True, env=env, timeout=600, check=False
    )


def test_every_stage_runs_without_opening_a_network_connection(tmp_path, generic_csv, tiny_dinov2):
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(NETWORK_GUARD)
    control = guarded_run(
        guard, [sys.executable, "-c", "import socket; socket.create_connection(('192.0.2.1', 9))"]
    )
    assert control.returncode != 0 and (guard / "network_used").read_text().startswith(
        "getaddrinfo"
    )
    (guard / "network_used").unlink()  # the guard works; now the real runs
    binary = REPO / ".venv" / "bin" / "prep"
    prep_command = [binary] if binary.exists() else [sys.executable, "-m", "pipeline.cli"]
    base = [*prep_command, "run", "--dataset", "generic", "--root", generic_csv, "--quiet"]
    result = guarded_run(
        guard,
        [
            *base,
            "--stage",
            "all",
            "--out",
            tmp_path / "out",
            "--dinov2",
            tiny_dinov2,
            "--captioner",
            "kinematic",
        ],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (
        len(manifest_rows(tmp_path / "out", "train")) > 0 and (tmp_path / "out" / "shards").is_dir()
    )
    missing = guarded_run(
        guard,
        [
            *base,
            "--stage",
            "features",
            "--out",
            tmp_path / "o2",
            "--dinov2",
            "facebook/dinov2-small",
        ],
    )
    assert missing.returncode == 1 and "not available offline" in missing.stderr
    assert not (guard / "network_used").exists(), (guard / "network_used").read_text()


def test_model_folders_with_their_own_code_never_run_it(tmp_path, generic_csv, tiny_dinov2):
    marker = tmp_path / "pwned"
    code = f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
    dinov2 = Path(shutil.copytree(tiny_dinov2, tmp_path / "dinov2"))
    config = json.loads((dinov2 / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "custom.Config", "AutoModel": "custom.Model"}
    (dinov2 / "config.json").write_text(json.dumps(config))
    (dinov2 / "custom.py").write_text(code)
    result = run_generic("features", generic_csv, tmp_path / "out", "--dinov2", dinov2)
    assert result.exit_code == 0, result.output  # the stock DINOv2 class loads the weights
    encoder = tmp_path / "encoder"
    encoder.mkdir()
    auto_map = {
        "AutoConfig": "custom.Config",
        "AutoModel": "custom.Model",
        "AutoTokenizer": ["custom.Tokenizer", None],
    }
    (encoder / "config.json").write_text(
        json.dumps({"model_type": "custom-encoder", "auto_map": auto_map})
    )
    (encoder / "custom.py").write_text(code)
    result = run_generic(
        "hand-captions",
        generic_csv,
        tmp_path / "captions",
        "--captioner",
        "kinematic",
        "--text-encoder",
        encoder,
    )
    last = result.stderr.strip().splitlines()[-1]
    assert (
        result.exit_code == 1
        and last.startswith("prep: error: ")
        and "needs its own Python code is refused" in last
    )
    assert not marker.exists()


def test_annotation_paths_and_split_names_stay_inside_root_and_out(
    tmp_path, generic_csv, tiny_dinov2
):
    corpus = generic_csv.parent
    good = [line.split(",") for line in generic_csv.read_text().splitlines()[1:]]
    (corpus / "clips" / "linked.mp4").symlink_to(
        corpus / good[0][1]
    )  # a symlink inside the root is fine
    header = "id,path,text,language,split"
    rows = [
        f"inside_abs,{corpus / good[1][1]},absolut aber im ordner,de,train",
        "linked,clips/linked.mp4,verlinkt,de,train",
        "up,../../../../etc/passwd,nach oben,de,train",
        "absolute,/etc/passwd,absolut,de,train",
        f"abs_up,{corpus}/clips/../../outside.mp4,absolut nach oben,de,train",
        f"sibling,{corpus}-other/clip.mp4,nachbarordner,de,train",
        f"split_up,{good[2][1]},ein satz,de,../../../escaped",
        f"split_up_bad,{good[2][1]},ein satz,,../../../escaped_too",
        f"..,{good[2][1]},punkte,de,train",
    ]
    annotations = corpus / "paths.csv"
    annotations.write_text("\n".join([header, *rows]) + "\n")
    out = tmp_path / "deep" / "er" / "out"
    result = run_generic(
        "features", annotations, out, "--dinov2", tiny_dinov2, "--max-quarantine-share", 1
    )
    assert result.exit_code == 0, result.output
    verified = prep("verify", "--out", out, "--max-quarantine-share", 1)
    assert verified.exit_code == 0  # the split holding only quarantined samples too
    found = {q["id"]: (q["split"], q["reason"], q["detail"]) for q in quarantine_rows(out)}
    assert {k: v[:2] for k, v in found.items()} == {
        "up": ("train", m.PATH_ESCAPES_ROOT),
        "absolute": ("train", m.PATH_ESCAPES_ROOT),
        "abs_up": ("train", m.PATH_ESCAPES_ROOT),
        "sibling": ("train", m.PATH_ESCAPES_ROOT),
        "split_up": ("unassigned", m.UNKNOWN_SPLIT),
        "split_up_bad": ("unassigned", m.MISSING_FIELD),
        "..": ("train", m.UNSAFE_ID),
    }
    assert "'../../../escaped_too' is not a simple lower-case name" in found["split_up_bad"][2]
    assert {r["id"] for r in manifest_rows(out, "train")} == {"inside_abs", "linked"}
    outside = [
        p
        for p in tmp_path.rglob("*")
        if not ({out, corpus} & {p, *p.parents}) and p not in out.parents
    ]
    assert outside == []  # nothing was written next to --out
