"""Our generic top-level names (crypto, config, handlers) are ours alone, and serve refuses otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import config
from callback_service.ops.packages import DISTRIBUTION, TOP_LEVEL, collisions


def test_each_top_level_name_is_provided_by_wecom_bind_alone() -> None:
    providers = packages_distributions()
    # A set: a checkout on the path shows its own wecom_bind.egg-info beside the installed metadata.
    assert {name: set(providers.get(name, ())) for name in TOP_LEVEL} == {name: {DISTRIBUTION} for name in TOP_LEVEL}


def test_no_collision_in_this_environment() -> None:
    assert collisions() == []


def serve(pythonpath: Path) -> subprocess.CompletedProcess[str]:
    """Run `wecom-bind serve` with pythonpath first on the import path; it should refuse to start."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("WECOM_BIND_")}
    env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run(
        [sys.executable, "-m", "callback_service", "serve", "--host", "127.0.0.1", "--port", "9"],
        env=env,
        cwd=pythonpath,  # not the checkout, which python -m would put first on the path
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_serve_refuses_another_distribution_that_installs_crypto(tmp_path: Path) -> None:
    info = tmp_path / "othercrypto-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: othercrypto\nVersion: 1.0\n")
    (info / "top_level.txt").write_text("crypto\n")

    result = serve(tmp_path)

    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "wecom-bind: package 'crypto' is also installed by othercrypto; refusing to start (uninstall the other)"
    ]


def test_serve_refuses_a_config_imported_from_elsewhere(tmp_path: Path) -> None:
    # A `config` package first on the path, that works (it runs ours) but is not ours.
    real = Path(config.__file__).parent
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "__init__.py").write_text(
        f"__path__ = [{str(real)!r}]\n"
        f"exec(compile(open({str(real / '__init__.py')!r}).read(), 'config', 'exec'))\n"
    )

    result = serve(tmp_path)

    assert result.returncode == 2
    assert "wecom-bind: package 'config' was imported from " + str(tmp_path / "config") in result.stderr
    assert "WECOM_BIND_" not in result.stderr  # refused before reading any setting
