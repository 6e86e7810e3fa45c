"""The experiment config: TOML file → pydantic model, with ``base`` inheritance and ``--set`` overrides.

Validation has two stages. The schema below checks the shape of the file (known keys, types,
resolutions). Then every component reference (``{name = "...", ...params}``) is checked against
the pydantic model its component registered, so ``model.generator.attention.reduction = "x"`` is
reported with file and dotted key before anything is built.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import tomli_w
import tomllib
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .errors import ConfigError, RegistryError
from .registry import Registry


def _ref_from_shorthand(value: Any) -> Any:
    return {"name": value} if isinstance(value, str) else value


class ComponentRef(BaseModel):
    """``{name = "component", ...parameters}``, or just ``"component"``."""

    model_config = ConfigDict(extra="allow")
    name: str

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


Ref = Annotated[ComponentRef, BeforeValidator(_ref_from_shorthand)]


class DataRef(ComponentRef):
    """The dataset component plus what the core does with its images before training."""

    holdout: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="fraction of the images reserved (seeded) and never trained on: the privacy audit's "
        "held-out real set, recorded in RUN/holdout.safetensors",
    )


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _power_of_two(value: int, low: int = 4, high: int = 1024) -> bool:
    return low <= value <= high and value & (value - 1) == 0


def _image_resolution(value: int) -> int:
    if not _power_of_two(value, 8, 1024):
        raise ValueError(f"{value} is not a power of two between 8 and 1024")
    return value


Resolution = Annotated[int, AfterValidator(_image_resolution)]


class NetworkConfig(Strict):
    """What the generator and the discriminator share: widths, attention, weight norms."""

    channels: dict[int, int] = Field(description="feature width per resolution, e.g. {4 = 512, 8 = 512}")
    block: Ref = Field(description="block family that builds the layers")
    attention: Ref | None = Field(None, description="attention component; none when absent")
    attention_resolutions: list[int] = Field(default_factory=list, description="resolutions that get attention")
    weight_norms: list[Ref] = Field(default_factory=list, description="applied to every conv, in order")

    @field_validator("channels")
    @classmethod
    def _widths(cls, channels: dict[int, int]) -> dict[int, int]:
        for res, width in channels.items():
            if not _power_of_two(res):
                raise ValueError(f"resolution {res} is not a power of two between 4 and 1024")
            if width < 1:
                raise ValueError(f"width {width} at resolution {res} must be positive")
        return dict(sorted(channels.items()))


class GeneratorConfig(NetworkConfig):
    feature_norm: Ref | None = Field(None, description="feature normalization after each conv (pixel norm)")


class DiscriminatorConfig(NetworkConfig):
    pass


class ModelConfig(Strict):
    resolution: Resolution = Field(description="output size, a power of two from 8 to 1024")
    image_channels: Literal[1, 3] = Field(1, description="1 for grayscale, 3 for RGB")
    latent_dim: int = Field(512, ge=1, description="size of z")
    connection: Ref = Field(description="single_scale or multi_scale (MSG-GAN)")
    generator: GeneratorConfig
    discriminator: DiscriminatorConfig

    @model_validator(mode="after")
    def _complete(self) -> ModelConfig:
        needed = self.resolutions
        for side in ("generator", "discriminator"):
            net: NetworkConfig = getattr(self, side)
            missing = [r for r in needed if r not in net.channels]
            if missing:
                raise ValueError(f"{side}.channels has no width for resolution(s) {missing}")
            stray = [r for r in net.attention_resolutions if r not in needed]
            if stray:
                raise ValueError(f"{side}.attention_resolutions {stray} are not in 4..{self.resolution}")
        return self

    @property
    def resolutions(self) -> list[int]:
        """4, 8, ..., resolution."""
        return [2**k for k in range(2, self.resolution.bit_length())]


class CollapseConfig(Strict):
    """The collapse alarm (:mod:`ganforge.collapse`): cheap diversity checks during training."""

    every: int = Field(100, ge=0, description="steps between checks (0 = no alarm)")
    images: int = Field(128, ge=8, description="fixed latents, and as many training images, per check")
    size: int = Field(16, ge=0, description="images are area-reduced to size×size before comparing (0 = never)")
    k: int = Field(5, ge=1, description="coverage's k-th nearest real neighbour")
    min_ratio: float = Field(0.5, ge=0, description="warn when the nearest-neighbour ratio falls below this")
    min_coverage: float = Field(0.5, ge=0, le=1, description="warn when coverage falls below this")


class TrainConfig(Strict):
    batch_size: int = Field(16, ge=1, description="images per step")
    steps: int | None = Field(None, ge=0, description="total optimisation steps (wins over epochs)")
    epochs: float = Field(1, gt=0, description="passes over the dataset when steps is not set")
    ema_decay: float = Field(0.999, ge=0, lt=1, description="decay of the generator's moving average")
    ema_warmup: bool = Field(False, description="use min(ema_decay, (1+step)/(10+step)) so short runs average usefully")
    log_every: int = Field(10, ge=1, description="steps between lines in metrics.jsonl")
    sample_every: int = Field(500, ge=1, description="steps between sample grids (samples/step_*.png)")
    checkpoint_every: int = Field(1000, ge=1, description="steps between checkpoints (weights + train state)")
    keep_checkpoints: int = Field(2, ge=1, description="checkpoints kept in checkpoints/ (the newest ones)")
    on_nonfinite: Literal["stop", "skip"] = Field(
        "stop", description="a nan/inf loss or gradient stops training, or skips that update"
    )
    grid_size: int = Field(16, ge=1, description="images in each sample grid")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="where to train; the device argument overrides it"
    )
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="autocast dtype; auto = fp32 or bf16, whichever trains this model fastest here, measured at "
        "start-up and cached (docs/performance.md)",
    )
    channels_last: bool | None = Field(
        None,
        description="NHWC memory layout for convolutions; unset: chosen by measurement with precision = auto, "
        "else false (see docs/performance.md)",
    )
    compile: bool = Field(False, description="torch.compile the generator (see docs/performance.md)")
    tensorboard: bool = Field(False, description="also log to RUN/tensorboard (needs the tensorboard package)")
    data_workers: int = Field(
        2, ge=0, description="processes reading batches ahead when the data streams from disk (0 = none)"
    )
    threads: int = Field(
        0, ge=0, description="torch's CPU threads (0 = torch's default; on a busy shared node fewer can be faster)"
    )
    collapse: CollapseConfig = Field(default_factory=CollapseConfig, description="the collapse alarm")


class EvalConfig(Strict):
    metrics: list[Ref] = Field(default_factory=list, description='metric components, e.g. ["fid", "ms_ssim"]')
    n: int = Field(0, ge=0, description="images per set; 0 = the whole dataset")
    batch_size: int = Field(
        32, ge=1, description="images per generator and feature-extractor batch (lowered to what fits in memory)"
    )
    every: int = Field(0, ge=0, description="evaluate every this many steps (0 = only at the end of training)")
    inception_weights: str = Field("", description="safetensors FID Inception weights ('' = env var, cache, download)")
    seed: int = Field(0, description="seed of the generated latents and the real subset")
    best: str = Field("fid", description="the figure that keeps generator_best: FIGURE or METRIC.FIGURE")
    best_mode: Literal["min", "max"] = Field("min", description="min: lower is better (FID, KID); max: higher")


class Config(Strict):
    name: str = Field("experiment", description="run name; the default run directory is runs/<name>")
    plugins: list[str] = Field(default_factory=list, description="extra plugin modules to import")
    seed: int = Field(0, description="initial weights, data order, latents: a run is a function of its seed")
    data: Annotated[DataRef, BeforeValidator(_ref_from_shorthand)] = Field(
        description="dataset component: phantom (offline) or image_folder"
    )
    model: ModelConfig
    loss: Ref = Field(description="adversarial loss component")
    optim: Ref = Field(description="optimizer for G and D")
    optim_d: Ref | None = Field(None, description="a different optimizer for D (default: optim)")
    augment: list[Ref] = Field(default_factory=list, description='augmentations of real batches, e.g. ["hflip"]')
    d_augment: list[Ref] = Field(
        default_factory=list,
        description='differentiable augmentations of all D sees, real and generated, e.g. ["diffaugment"] or ["ada"]',
    )
    regularize: list[Ref] = Field(
        default_factory=list, description='penalties on D, e.g. [{ name = "r1", gamma = 1.0, every = 16 }]'
    )
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    def component_refs(self) -> Iterator[tuple[str, str, ComponentRef]]:
        """(dotted key, kind, reference) of every component the config names."""
        yield "data", "dataset", self.data
        yield "model.connection", "connection", self.model.connection
        for side, block_kind in (("generator", "generator_block"), ("discriminator", "discriminator_block")):
            net: NetworkConfig = getattr(self.model, side)
            yield f"model.{side}.block", block_kind, net.block
            if net.attention is not None:
                yield f"model.{side}.attention", "attention", net.attention
            for i, ref in enumerate(net.weight_norms):
                yield f"model.{side}.weight_norms.{i}", "weight_norm", ref
        if self.model.generator.feature_norm is not None:
            yield "model.generator.feature_norm", "feature_norm", self.model.generator.feature_norm
        yield "loss", "loss", self.loss
        yield "optim", "optimizer", self.optim
        if self.optim_d is not None:
            yield "optim_d", "optimizer", self.optim_d
        for i, ref in enumerate(self.augment):
            yield f"augment.{i}", "augment", ref
        for i, ref in enumerate(self.d_augment):
            yield f"d_augment.{i}", "d_augment", ref
        for i, ref in enumerate(self.regularize):
            yield f"regularize.{i}", "regularizer", ref
        for i, ref in enumerate(self.eval.metrics):
            yield f"eval.metrics.{i}", "metric", ref

    def to_dict(self) -> dict[str, Any]:
        """Plain data (string keys, no ``None``) for TOML, JSON and safetensors metadata."""
        return self.model_dump(mode="json", exclude_none=True)


# --------------------------------------------------------------------------- loading


def read_toml(path: Path, what: str = "config file") -> dict[str, Any]:
    """A TOML file as plain data: every file ganforge reads (experiments, classifiers, sweeps) comes
    through here, so a missing, unreadable, non-UTF-8 or malformed one is one error naming it."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{what} not found", file=str(path)) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (byte {exc.start}); TOML files are UTF-8", file=str(path)) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read ({exc.strerror or exc})", file=str(path)) from exc
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        raise ConfigError(f"invalid TOML: {exc}", file=str(path)) from exc


Model = TypeVar("Model", bound=BaseModel)


def validated(schema: type[Model], data: Any, file: str | None = None, prefix: str = "") -> Model:
    """``schema.model_validate(data)``; the first problem is a :class:`ConfigError` naming the file and dotted key."""
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise _format_validation_error(exc, file, prefix) from exc
    except RecursionError as exc:
        raise ConfigError("nested too deeply", file=file) from exc


def _read_toml(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a TOML file and merge it over its ``base`` (a path relative to the file)."""
    if path in seen:
        raise ConfigError(f"'base' chain loops back to {path}", file=str(path), key="base")
    data = read_toml(path)
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError("must be a path to another TOML file", file=str(path), key="base")
    return deep_merge(_read_toml((path.parent / base).resolve(), (*seen, path)), data)


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` wins; tables merge key by key, everything else is replaced.

    A component table that names a different component (``[optim] name = "rmsprop"`` over an
    inherited Adam) replaces the inherited table: the old component's parameters would not fit.
    """
    merged = dict(base)
    for key, value in override.items():
        inherited = merged.get(key)
        if (
            isinstance(value, Mapping)
            and isinstance(inherited, Mapping)
            and value.get("name", inherited.get("name")) == inherited.get("name")
        ):
            merged[key] = deep_merge(inherited, value)
        else:
            merged[key] = value
    return merged


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"optim.lr=0.0002"`` → (["optim", "lr"], 0.0002). Values are TOML; bare words are strings."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. optim.lr=0.0002")
    try:
        parsed = tomllib.loads(f"v = {raw.strip()}")
    except (tomllib.TOMLDecodeError, RecursionError):
        parsed = {}
    value = parsed["v"] if len(parsed) == 1 else raw.strip()  # "1\nx = 2" is a string, not two keys
    parts = key.split(".")
    if not all(parts):
        raise ConfigError(f"override {item!r}: {key!r} has an empty part; keys look like optim.lr")
    return parts, value


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """``--set`` overrides on plain config data.

    A ``…name=`` override that names another component replaces the whole component table, as
    ``base`` inheritance does (the old component's parameters would be unknown keys); the ``name``
    overrides are applied first, so ``--set data.root=… --set data.name=image_folder`` keeps the root.
    """
    data = dict(data)
    parsed = [parse_override(item) for item in overrides]
    for path, value in sorted(parsed, key=lambda override: override[0][-1] != "name"):
        node = data
        for part in path[:-1]:
            child = node.get(part)
            if isinstance(child, str):  # "attention" shorthand → table
                child = {"name": child}
            node[part] = dict(child) if isinstance(child, Mapping) else {}
            node = node[part]
        if path[-1] == "name" and len(path) > 1 and node.get("name", value) != value:
            node.clear()
        node[path[-1]] = value
    return data


def _format_validation_error(exc: ValidationError, file: str | None, prefix: str = "") -> ConfigError:
    err = exc.errors()[0]
    loc = ".".join(str(part) for part in err["loc"] if not str(part).startswith("function-"))
    key = ".".join(p for p in (prefix, loc) if p) or None
    reason = err["msg"]
    if err["type"] == "extra_forbidden":
        reason = "unknown key"
    elif err["type"] == "missing":
        reason = "required key is missing"
    more = len(exc.errors()) - 1
    if more:
        reason += f" (and {more} more error{'s' if more > 1 else ''})"
    return ConfigError(reason, file=file, key=key)


def _non_finite(data: Any, prefix: str = "") -> str | None:
    """The dotted key of the first ``inf``/``nan`` in plain data (TOML allows them; no setting wants them)."""
    if isinstance(data, float) and not math.isfinite(data):
        return prefix or "(value)"
    items = data.items() if isinstance(data, Mapping) else enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        found = _non_finite(value, f"{prefix}.{key}" if prefix else str(key))
        if found:
            return found
    return None


def validate_config(
    data: Mapping[str, Any],
    registry: Registry,
    file: str | None = None,
    schema: Schema | None = None,
) -> Any:
    """Validate plain data into ``schema`` (a :class:`Config` by default) with complete, checked component params."""
    bad = _non_finite(data)
    if bad:
        raise ConfigError("must be a finite number (inf and nan are not allowed)", file=file, key=bad)
    config = validated(schema or Config, dict(data), file)
    for key, kind, ref in config.component_refs():
        try:
            component = registry.get(kind, ref.name)
        except RegistryError as exc:
            raise ConfigError(str(exc), file=file, key=f"{key}.name") from exc
        try:
            params = component.validate(ref.params)
        except ValidationError as exc:
            raise _format_validation_error(exc, file, key) from exc
        # Store the complete parameter set so the saved config shows every default.
        for field, value in params.model_dump().items():
            setattr(ref, field, value)
    return config


def _as_before(ref: Any, name: str, **added: Any) -> Any:
    """``ref`` (a component's name or table) with the parameters ``name`` gained since, at the values it ran with."""
    if ref == name:
        return {"name": name, **added}
    if isinstance(ref, Mapping) and ref.get("name") == name:
        return {**added, **ref}
    return ref


def as_recorded(data: Mapping[str, Any]) -> dict[str, Any]:
    """A config that a run or a weights file recorded, read as what it ran with.

    Keys added since keep their meaning for what was written before them: a phantom without
    ``data.version`` was version 1 (version 2, the default since, renders other images); a
    spectral norm without ``scale`` had the unit scale; an experiment without ``d_augment`` or
    ``regularize`` had none; a multi-scale connection without ``fakes`` fed D G's own images; a
    self-attention without ``pool`` attended to every position; an Adam without ``fused`` was not.
    """
    out = dict(data)
    if "loss" in out:  # an experiment's config (classifier configs have no such keys)
        out = {"d_augment": [], "regularize": [], **out}
    for key in ("optim", "optim_d"):
        if key in out:
            out[key] = _as_before(out[key], "adam", fused=False)
    model = out.get("model")
    if isinstance(model, Mapping):
        out["model"] = model = dict(model)
        for side in ("generator", "discriminator"):
            net = model.get(side)
            if not isinstance(net, Mapping):
                continue
            model[side] = net = dict(net)
            if isinstance(net.get("weight_norms"), list):
                net["weight_norms"] = [_as_before(ref, "spectral", scale="unit") for ref in net["weight_norms"]]
            if "attention" in net:
                net["attention"] = _as_before(net["attention"], "self_attention", pool=1)
        if "connection" in model:
            model["connection"] = _as_before(model["connection"], "multi_scale", fakes="heads")
    if "data" in out:
        out["data"] = _as_before(out["data"], "phantom", version=1)
    return out


def load_config(
    path: str | Path,
    registry_for: Any,
    overrides: Sequence[str] = (),
    schema: Schema | None = None,
    recorded: bool = False,
) -> tuple[Any, Registry]:
    """Read ``path`` (+ ``base`` chain, + ``--set`` overrides), load plugins, validate.

    ``registry_for(plugin_modules)`` returns the registry, so the ``plugins`` key of the file can
    name extra modules before component names are checked. ``recorded``: the file is a run's own
    ``config.toml``, read through :func:`as_recorded`.
    """
    path = Path(path)
    data = _read_toml(path.resolve())
    data = apply_overrides(as_recorded(data) if recorded else data, overrides)
    plugins = data.get("plugins", [])
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        raise ConfigError("must be a list of module paths", file=str(path), key="plugins")
    registry = registry_for(plugins)
    return validate_config(data, registry, str(path), schema), registry


def dump_toml(config: BaseModel) -> str:
    return tomli_w.dumps(config.model_dump(mode="json", exclude_none=True))


class ClassifierTrainConfig(Strict):
    epochs: float = Field(5, gt=0, description="passes over the training split")
    batch_size: int = Field(64, ge=1)
    lr: float = Field(0.001, gt=0, description="Adam learning rate")
    holdout: float = Field(0.2, gt=0, lt=1, description="fraction of the images held out for testing")
    flip: bool = Field(False, description="random horizontal flips of training images")
    device: Literal["auto", "cpu", "cuda"] = "auto"


class ClassifierConfig(Strict):
    """``ganforge classify train CONFIG``: a multi-label classifier on a labelled dataset."""

    name: str = Field("classifier", description="run name; the default output directory is runs/<name>")
    plugins: list[str] = Field(default_factory=list, description="extra plugin modules to import")
    seed: int = Field(0, description="weights, split and batch order")
    resolution: Resolution = Field(64, description="images are resized to this (a power of two from 8 to 1024)")
    image_channels: Literal[1, 3] = 1
    data: Ref = Field(description="a labelled dataset component (phantom, image_folder with labels)")
    classifier: Ref = Field(description="classifier component: small_cnn or densenet121")
    train: ClassifierTrainConfig = Field(default_factory=ClassifierTrainConfig)

    def component_refs(self) -> Iterator[tuple[str, str, ComponentRef]]:
        yield "data", "dataset", self.data
        yield "classifier", "classifier", self.classifier


Schema = type[Config] | type[ClassifierConfig]  # the file schemas validate_config and load_config read
