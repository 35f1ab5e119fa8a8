"""The image, short of a Docker engine: the wheel built from what the Dockerfile copies, installed into
a fresh venv as the Dockerfile installs it, serves /health, and carries no emulators."""

from __future__ import annotations

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


def build_stage_sources() -> list[str]:
    """What the Dockerfile's build stage copies from the repository."""
    sources: list[str] = []
    stage = 0
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("FROM "):
            stage += 1
        copied = re.match(r"COPY\s+(?!--from)(.+)\s+\S+$", line)
        if stage == 1 and copied:
            sources += copied.group(1).split()
    return sources


def test_the_dockerfile_copies_the_service_and_no_emulator_or_test() -> None:
    sources = build_stage_sources()
    assert {"callback_service", "handlers", "crypto", "config", "setup.cfg"} <= set(sources)
    assert not {"sandbox", "tests", "bench", "."} & set(sources)


def test_the_wheel_installed_as_the_dockerfile_does_serves_without_the_sandbox(tmp_path: Path) -> None:
    # The build stage: its copies of the repository, then `pip wheel`.
    context = tmp_path / "src"
    context.mkdir()
    for source in build_stage_sources():
        path = ROOT / source
        if path.is_dir():
            shutil.copytree(path, context / source, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, context / source)
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "--wheel-dir", str(wheels), str(context)],
        check=True, timeout=300, capture_output=True,
    )
    [wheel] = wheels.glob("wecom_bind-*.whl")

    # The run stage: a fresh Python with the wheel installed. Its dependencies are this test
    # environment's own (same versions that pip would resolve; no index needed offline).
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

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = service_env(port, store_url=f"sqlite:///{tmp_path / 'store.db'}")
    process = start_service(["serve", "--host", "127.0.0.1", "--port", str(port)], env,
                            command=[str(image / "bin" / "wecom-bind")])
    try:
        wait_healthy(base, process)
        with urllib.request.urlopen(base + "/health", timeout=5) as response:  # noqa: S310 - loopback
            assert response.status == 200
            assert b'"status": "ok"' in response.read()
    finally:
        stop(process)

    demo = subprocess.run(
        [str(image / "bin" / "wecom-bind"), "demo"], cwd=tmp_path, capture_output=True, text=True,
        timeout=60, check=False,
    )
    assert demo.returncode == 2
    assert "needs the emulators" in demo.stderr
