"""The image, short of a Docker engine: the wheel built from what the Dockerfile copies, installed into
a fresh venv as the Dockerfile installs it, serves /health on the port its variable names, its
HEALTHCHECK follows that port, it carries no emulators; every package comes from the hashed lock files
that this test environment was installed from; the build context leaves out the venvs and the data."""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import urllib.request
import venv
from pathlib import Path

import pytest

from tests.support.processes import free_port, start_service, stop, wait_healthy
from tests.support.world import service_env

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def dockerfile_stages() -> list[list[str]]:
    """The Dockerfile's instructions, continuation lines joined and comments dropped, stage by stage."""
    stages: list[list[str]] = []
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.startswith("FROM "):
            stages.append([])
        stages[-1].append(line.strip())
    return stages


def build_stage_sources() -> list[str]:
    """What the Dockerfile's build stage copies from the repository."""
    sources: list[str] = []
    for line in dockerfile_stages()[0]:
        copied = re.match(r"COPY\s+(?!--from)(.+)\s+\S+$", line)
        if copied:
            sources += copied.group(1).split()
    return sources


def healthcheck_command() -> str:
    """The HEALTHCHECK's command, which the engine runs with /bin/sh -c inside the container."""
    [command] = [line for line in dockerfile_stages()[-1] if line.startswith("HEALTHCHECK ")]
    return command.split(" CMD ", 1)[1]


def pins(lock: str) -> dict[str, str]:
    """A lock file's pins, by normalised name; each must carry a hash."""
    text = (ROOT / "requirements" / lock).read_text()
    found: dict[str, str] = {}
    for block in re.split(r"\n(?=\S)", text):
        pin = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", block)
        if pin:
            assert "--hash=sha256:" in block, f"{lock}: {pin.group(1)} has no hash"
            found[re.sub(r"[-_.]+", "-", pin.group(1)).lower()] = pin.group(2)
    return found


def dockerignore_excludes(path: str) -> bool:
    """Whether .dockerignore leaves path out of the build context (its last matching line wins, and a
    left-out folder leaves out everything in it), by the engine's rules for the patterns used here."""
    excluded = False
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        keep = pattern.startswith("!")
        glob = pattern.removeprefix("!").strip("/")
        regex = re.escape(glob).replace(r"\*\*/", "(.*/)?").replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        parts = path.split("/")
        if any(re.fullmatch(regex, "/".join(parts[:end])) for end in range(1, len(parts) + 1)):
            excluded = not keep
    return excluded


def test_the_dockerfile_copies_the_service_and_no_emulator_or_test() -> None:
    sources = build_stage_sources()
    assert {"callback_service", "handlers", "crypto", "config", "setup.cfg"} <= set(sources)
    assert not {"sandbox", "tests", "bench", "."} & set(sources)


def test_the_dockerfile_installs_only_the_locked_set_checked_against_its_hashes() -> None:
    build = dockerfile_stages()[0]
    installs = [step for line in build if line.startswith("RUN ") for step in line.split("&&")
                if re.search(r"\bpip\b.*\b(install|wheel)\b", step)]
    locked = [step for step in installs if " -r " in step]
    assert set(re.findall(r"-r (\S+)", " ".join(locked))) == {"requirements/build.txt", "requirements/runtime.txt"}
    assert all("--require-hashes" in step for step in locked), locked
    # The rest is the service's own wheel: its dependencies and build backend come from the lock only.
    assert all("--no-deps" in step for step in installs if step not in locked), installs
    assert all("--no-build-isolation" in step for step in installs if " wheel " in step), installs


def test_the_final_stage_copies_the_installed_venv_and_no_wheel() -> None:
    final = dockerfile_stages()[-1]
    assert [line for line in final if line.startswith("COPY")] == [
        "COPY --from=build /opt/wecom-bind /opt/wecom-bind"
    ]
    assert not [line for line in final if "wheel" in line or ".whl" in line]


def test_the_lock_files_agree_and_this_test_environment_is_installed_from_them() -> None:
    runtime, test, build = pins("runtime.txt"), pins("test.txt"), pins("build.txt")
    assert {"aiohttp", "pydantic", "cryptography"} <= runtime.keys()
    assert {"pytest", "mypy", "ruff"} <= test.keys()
    assert "setuptools" in build
    # The test lock holds the image's runtime pins unchanged: CI tests what the image ships.
    assert {name: test.get(name) for name in runtime} == runtime
    assert {name: test[name] for name in build.keys() & test.keys()} == {
        name: build[name] for name in build.keys() & test.keys()
    }
    installed = {name: importlib.metadata.version(name) for name in test | build}
    assert installed == test | build, "rebuild the venv: make .venv/.installed"


@pytest.mark.parametrize("path", [
    ".venv/bin/python", ".venv-lock/bin/pip-compile", "data/wecom-bind.db", "tests/ops/test_image.py",
    "bench/__main__.py", "sandbox/wecom.py", "docs/deploy.md", ".git/config", ".mypy_cache/3.11/x.json",
    "callback_service/__pycache__/app.cpython-311.pyc", "my.toml",
])
def test_the_build_context_leaves_out(path: str) -> None:
    assert dockerignore_excludes(path)


def test_the_build_context_keeps_what_the_dockerfile_copies() -> None:
    for source in build_stage_sources():
        path = ROOT / source
        files = [path] if path.is_file() else [file for file in path.rglob("*")
                                                if file.is_file() and "__pycache__" not in file.parts]
        assert files, source
        for file in files:
            assert not dockerignore_excludes(file.relative_to(ROOT).as_posix()), file


def test_the_wheel_installed_as_the_dockerfile_does_serves_without_the_sandbox(tmp_path: Path) -> None:
    # The build stage: its copies of the repository, then `pip wheel`.
    context = tmp_path / "src"
    context.mkdir()
    for source in build_stage_sources():
        path = ROOT / source
        (context / source).parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir():
            shutil.copytree(path, context / source, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, context / source)
    wheels = tmp_path / "wheels"
    subprocess.run(  # by the locked setuptools of this environment, as the build stage's
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "--wheel-dir", str(wheels), str(context)],
        check=True, timeout=300, capture_output=True,
    )
    [wheel] = wheels.glob("wecom_bind-*.whl")

    # The run stage: a fresh Python with the wheel installed. Its dependencies are this test
    # environment's own, installed from the same lock (test_the_lock_files_agree... checks).
    image = tmp_path / "image"
    venv.create(image, with_pip=False)
    python = image / "bin" / "python"
    site = Path(subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout.strip())
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
        check=True, timeout=300, capture_output=True,
    )

    probe = subprocess.run(
        [str(python), "-c", "import callback_service, sys; print(callback_service.__file__);"
         " import sandbox"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )
    assert probe.stdout.strip().startswith(str(image)), probe.stdout  # the wheel's copy, not the repository's
    assert "No module named 'sandbox'" in probe.stderr

    # Not the default port, named only by the variable, as `docker run -e WECOM_BIND_PORT=...` does.
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = service_env(port, store_url=f"sqlite:///{tmp_path / 'store.db'}") | {"WECOM_BIND_PORT": str(port)}
    process = start_service(["serve", "--host", "127.0.0.1"], env, command=[str(image / "bin" / "wecom-bind")])
    try:
        wait_healthy(base, process)
        with urllib.request.urlopen(base + "/health", timeout=5) as response:  # noqa: S310 - loopback
            assert response.status == 200
            assert b'"status": "ok"' in response.read()
        assert healthcheck(image, port).returncode == 0
        assert healthcheck(image, free_port()).returncode != 0  # nothing listens there: unhealthy
    finally:
        stop(process)

    demo = subprocess.run(
        [str(image / "bin" / "wecom-bind"), "demo"], cwd=tmp_path, capture_output=True, text=True,
        timeout=60, check=False,
    )
    assert demo.returncode == 2
    assert "needs the emulators" in demo.stderr


def healthcheck(image: Path, port: int) -> subprocess.CompletedProcess[str]:
    """The Dockerfile's HEALTHCHECK command, run as the engine runs it, with the image's Python first
    on PATH (the Dockerfile's ENV PATH) and WECOM_BIND_PORT set to port."""
    env = {"PATH": f"{image / 'bin'}{os.pathsep}{os.environ['PATH']}", "WECOM_BIND_PORT": str(port)}
    return subprocess.run(["/bin/sh", "-c", healthcheck_command()], env=env, capture_output=True, text=True,
                          timeout=30, check=False)
