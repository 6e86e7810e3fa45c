"""The command line through click's runner: exit codes, one-line errors, files written."""

import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import write_tiny
from PIL import Image

from ganforge.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result


def test_dry_run_prints_the_full_width_architecture():
    result = run("build", EXAMPLES / "msggan.toml", "--dry-run", "--set", "model.image_channels=3")
    assert result.exit_code == 0, result.output
    assert "generator: 22,490,383 parameters" in result.output
    assert "discriminator: 18,364,161 parameters" in result.output
    assert "connection:multi_scale" in result.output and "blocks" in result.output
    samgan = run("build", EXAMPLES / "samgan.toml", "--dry-run")
    assert "attention:self_attention" in samgan.output and "256×64×64" in samgan.output


def test_typo_in_component_name_exits_2_with_one_line(tmp_path):
    config = write_tiny(tmp_path)
    result = run("build", config, "--set", "model.generator.attention.name=self_atenton", "--dry-run")
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    head = f"error: {config}: model.generator.attention.name: unknown attention 'self_atenton'; did you mean "
    assert lines[0].startswith(head) and lines[0].endswith("?")
    # The suggestions come from whatever is installed (a third-party attention plugin may be among them).
    assert "self_attention" in lines[0][len(head) : -1].split(", ")
    assert "Traceback" not in result.output


def test_wrong_value_and_bad_set_exit_2(tmp_path):
    config = write_tiny(tmp_path)
    result = run("build", config, "--set", "train.batch_size=0")
    assert result.exit_code == 2 and "train.batch_size: Input should be greater than or equal to 1" in result.output
    assert run("build", config, "--set", "nonsense").exit_code == 2
    assert run("build", config, "--steps", "1", "--epochs", "1").exit_code == 2
    assert run("sample", "--weights", tmp_path / "none.safetensors", "--out", tmp_path / "s").exit_code == 2


@pytest.mark.slow
def test_build_then_sample_gives_identical_grayscale_pngs(tmp_path):
    config = write_tiny(tmp_path)
    result = run("build", config, "--out", tmp_path / "run", "--steps", "3", "--seed", "7")
    assert result.exit_code == 0, result.output
    weights = tmp_path / "run" / "generator_ema.safetensors"
    for folder in ("a", "b"):
        result = run(
            "sample",
            "--weights",
            weights,
            "-n",
            "5",
            "--out",
            tmp_path / folder,
            "--seed",
            "1",
            "--batch-size",
            "2",
            "--grid",
            tmp_path / f"{folder}.png",
        )
        assert result.exit_code == 0, result.output
    files = sorted((tmp_path / "a").iterdir())
    assert [f.name for f in files] == [f"sample_{i:05d}.png" for i in range(5)]
    for f in files:
        assert f.read_bytes() == (tmp_path / "b" / f.name).read_bytes()
        with Image.open(f) as image:
            assert image.mode == "L" and image.size == (16, 16)
    assert Image.open(tmp_path / "a.png").size[0] > 16

    # --resume with --steps means the total: 3 → 5 runs two more steps.
    result = run("build", config, "--resume", tmp_path / "run", "--steps", "5", "--seed", "7")
    assert result.exit_code == 0, result.output
    assert "step 3 → 5" in result.output


def test_phantom_command_writes_dataset(tmp_path):
    result = run("phantom", "--out", tmp_path / "ph", "-n", "6", "--resolution", "32", "--seed", "2")
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "ph" / "images").glob("phantom_*.png"))) == 6
    assert (tmp_path / "ph" / "labels.csv").read_text().startswith("Image Index,Finding Labels\n")
    assert run("phantom", "--out", tmp_path / "x", "--resolution", "48").exit_code == 2


def test_plugins_lists_components_with_defaults():
    result = run("plugins")
    assert result.exit_code == 0
    for text in ("self_attention", "multi_scale", "relativistic_hinge", "phantom", "reduction=8", "combine='lin_cat'"):
        assert text in result.output


def test_reference_docs_match_the_registry():
    """docs/reference.md is generated; regenerate with `ganforge plugins --markdown --bundled > docs/reference.md`."""
    from ganforge.reference import bundled_registry, markdown

    registry = bundled_registry()
    text = markdown(registry)
    committed = (Path(__file__).resolve().parents[1] / "docs" / "reference.md").read_text()
    assert committed == text
    for component in registry:
        assert f"### `{component.name}`" in text
        for name in component.params.model_fields:
            assert f"| `{name}` |" in text
    assert run("plugins", "--markdown", "--bundled").output == text


def test_evaluate_refuses_an_unknown_metric_before_any_work(tmp_path):
    result = run("evaluate", "--fake", tmp_path, "--real", tmp_path, "--resolution", "16", "--metrics", "fid,msssim")
    assert result.exit_code == 2
    assert "unknown metric 'msssim'; did you mean ms_ssim" in result.output
    assert run("evaluate", "--real", tmp_path).exit_code == 2  # neither --weights nor --fake


def test_every_option_of_every_command_is_in_the_cli_docs():
    """docs/cli.md is written by hand: this fails when a command or an option is missing from it."""
    import click

    docs = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()

    def commands(group: click.Group, prefix: str):
        for name, command in group.commands.items():
            path = f"{prefix} {name}"
            if isinstance(command, click.Group):
                yield from commands(command, path)
            else:
                yield path, command

    missing = []
    for path, command in commands(main, "ganforge"):
        rows = " ".join(line for line in docs.splitlines() if f"`{path} " in line or f"`{path}`" in line)
        if not rows:
            missing.append(path)
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                shown = [o for o in param.opts if o.startswith("--")] or param.opts
                if not any(f"{o} " in rows or f"{o}]" in rows or f"{o}`" in rows for o in shown):
                    missing.append(f"{path} {shown[0]}")  # documented in the row of its own command
    assert not missing, f"not in docs/cli.md: {missing}"


def test_the_readme_layout_table_names_every_module_and_only_existing_ones():
    """Each module and sub-package of ganforge/ is in a row of the README's layout table, and each path named exists."""
    root = Path(__file__).resolve().parents[1]
    table = root.joinpath("README.md").read_text().split("## Layout", 1)[1].split("\n\n", 2)[1]
    named = set()
    for row in table.splitlines():
        paths = re.findall(r"`([\w./-]+)`", row.split("|")[1])
        folder = paths[0].rsplit("/", 1)[0] if paths and "/" in paths[0].rstrip("/") else ""
        named |= {p if "/" in p.rstrip("/") or not folder else f"{folder}/{p}" for p in paths}
    modules = {f"ganforge/{p.name}" for p in (root / "ganforge").glob("*.py") if not p.name.startswith("__")}
    packages = {f"ganforge/{p.name}/" for p in (root / "ganforge").iterdir() if (p / "__init__.py").is_file()}
    assert modules | packages <= named, sorted((modules | packages) - named)
    assert all((root / p).exists() for p in named), sorted(p for p in named if not (root / p).exists())
