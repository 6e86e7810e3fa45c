"""The example third-party package (examples/plugins/ganforge-cbam): pip-installed, discovered, trained."""

import importlib
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ganforge.cli import main
from ganforge.plugins import load_registry

PACKAGE = Path(__file__).resolve().parents[1] / "examples" / "plugins" / "ganforge-cbam"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed():
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", str(PACKAGE)],
        check=True,
    )
    importlib.invalidate_caches()
    yield


def test_discovered_through_its_entry_point(installed):
    component = load_registry().get("attention", "cbam")
    assert component.plugin == "cbam"
    assert component.params.model_fields["reduction"].default == 8
    result = CliRunner().invoke(main, ["plugins"])
    assert "cbam" in result.output


def test_its_example_config_trains(installed, tmp_path):
    result = CliRunner().invoke(main, ["build", str(PACKAGE / "example.toml"), "--steps", "2", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    from safetensors import safe_open

    with safe_open(str(tmp_path / "generator.safetensors"), "pt") as weights:
        keys = list(weights.keys())
    assert any(k.endswith("spatial.parametrizations.weight.original") for k in keys)  # CBAM, spectral-normed
    assert not any(k.endswith(".f.parametrizations.weight.original") for k in keys)  # no SAGAN attention


def test_its_own_tests_pass(installed):
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(PACKAGE / "tests")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout
