"""docker/: both images install what pyproject and the Makefile install, run as a non-root user,
offline, with ``prep`` as the entry point. No container engine runs here: the files are parsed."""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
DOCKERFILES = ("Dockerfile.cpu", "Dockerfile.cuda")
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = "\n".join(
        line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")
    )
    joined = re.sub(r"\\\n", " ", text)
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip())
        for line in joined.splitlines()
        if line.strip()
    ]


def pip_installs(steps: list[tuple[str, str]]) -> list[list[str]]:
    """The arguments of every ``pip install`` in RUN steps, in order."""
    installs = []
    for instruction, args in steps:
        if instruction != "RUN":
            continue
        for command in re.split(r"&&|;", args):
            words = shlex.split(command)
            if words[:2] == ["pip", "install"] or words[1:3] == ["-m", "pip"]:
                installs.append([w for w in words if w not in ("pip", "install")])
    return installs


def makefile_torch_pins() -> set[str]:
    match = re.search(r"^TORCH \?= (.+)$", (REPO / "Makefile").read_text(), re.MULTILINE)
    return set(match.group(1).split())


def extras_of(words: list[str]) -> set[str]:
    for word in words:
        match = re.fullmatch(r"(?:-e\s*)?\.\[([\w,-]+)\]", word)
        if match:
            return set(match.group(1).split(","))
    return set()


def test_the_makefile_pins_torch_and_torchvision():
    pins = makefile_torch_pins()
    assert {p.split("==")[0] for p in pins} == {"torch", "torchvision"} and all(
        "==" in p for p in pins
    )


@pytest.mark.parametrize("name", DOCKERFILES)
def test_image_installs_the_project_with_the_makefile_torch_pins_and_every_runtime_extra(name):
    steps = instructions(REPO / "docker" / name)
    installs = pip_installs(steps)
    torch_step = next(words for words in installs if any(w.startswith("torch==") for w in words))
    assert makefile_torch_pins() <= set(torch_step), (
        f"{name}: torch pins differ from the Makefile's"
    )
    assert installs.index(torch_step) == 0, f"{name}: torch must be installed first"
    project = [words for words in installs if extras_of(words)]
    assert len(project) == 1, f"{name}: expected one `pip install .[extras]`"
    runtime_extras = set(PYPROJECT["project"]["optional-dependencies"]) - {"dev"}
    assert extras_of(project[0]) == runtime_extras
    make_extras = set(
        re.search(r"-e '\.\[([\w,-]+)\]'", (REPO / "Makefile").read_text()).group(1).split(",")
    )
    assert runtime_extras <= make_extras, "CI (Makefile) and the images install different extras"
    copied = {args.split()[0] for instruction, args in steps if instruction == "COPY"}
    packages = {
        pattern.rstrip("*")
        for pattern in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    assert packages | {"pyproject.toml"} <= copied


@pytest.mark.parametrize("name", DOCKERFILES)
def test_image_runs_prep_offline_as_a_non_root_user_with_volumes(name):
    steps = instructions(REPO / "docker" / name)
    users = [args for instruction, args in steps if instruction == "USER"]
    assert users and users[-1] not in ("root", "0"), f"{name}: must end as a non-root USER"
    user_at = max(i for i, (instruction, _) in enumerate(steps) if instruction == "USER")
    assert all(instruction != "RUN" for instruction, _ in steps[user_at:]), (
        "installs happen before USER"
    )
    assert [json.loads(args) for instruction, args in steps if instruction == "ENTRYPOINT"] == [
        ["prep"]
    ]
    env = " ".join(args for instruction, args in steps if instruction == "ENV")
    assert "HF_HUB_OFFLINE=1" in env.split()
    volumes = [json.loads(args) for instruction, args in steps if instruction == "VOLUME"]
    assert volumes and {"/data", "/home/prep/.cache"} <= set(volumes[0])
    assert f"/home/{users[-1]}/.cache/huggingface" in env, (
        "the model cache lives on the cache volume"
    )


def test_cuda_image_uses_a_cuda_base_and_pypi_cuda_wheels_and_cpu_image_the_cpu_index():
    cuda = instructions(REPO / "docker" / "Dockerfile.cuda")
    base = next(args for instruction, args in cuda if instruction == "FROM")
    assert base.startswith(("nvidia/cuda:", "pytorch/pytorch:"))
    assert not any(
        "--index-url" in words and "cpu" in " ".join(words) for words in pip_installs(cuda)
    )
    dependencies = [re.split(r"[<>=!; ]", d)[0] for d in PYPROJECT["project"]["dependencies"]]
    assert (
        "accelerate" in dependencies
    )  # the launcher of docker/accelerate-multigpu.md comes with the project
    cpu = pip_installs(instructions(REPO / "docker" / "Dockerfile.cpu"))
    assert "https://download.pytorch.org/whl/cpu" in cpu[0]


def test_multigpu_recipe_launches_prep_in_the_cuda_image():
    recipe = (REPO / "docker" / "accelerate-multigpu.md").read_text()
    assert "docker build -f docker/Dockerfile.cuda" in recipe
    assert "--entrypoint accelerate" in recipe and "--gpus all" in recipe
    assert re.search(
        r"launch --multi_gpu --num_processes \d+ .*-m pipeline\.cli run",
        recipe.replace("\\\n", " "),
    )
