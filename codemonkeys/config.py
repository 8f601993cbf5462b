"""The one typed configuration tree.

A run is configured by a YAML file (shipped ones live in ``configs/``) plus
``key=value`` overrides from the command line. Unknown keys and wrong types are
rejected with a message naming the key and where it came from. Nothing else in
the package reads environment variables: API keys are named here
(``providers.<name>.api_key_env``) and resolved by the CLI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, field_validator

from .errors import ConfigError
from .resources import find_config, resource_dir


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, values are checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


# --- models -----------------------------------------------------------------


class ModelSettings(Section):
    """Which model a stage uses and how it samples."""

    model: str = "anthropic:claude-sonnet-4-6"
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    max_output_tokens: int = Field(4096, gt=0)
    # Prompt plus output must fit; ``None``: looked up (shipped table, or the
    # server's ``/v1/models``) when the run starts.
    context_window: int | None = Field(None, gt=0)


class StageModels(Section):
    """One model setting per stage that calls an LLM."""

    relevance: ModelSettings = ModelSettings(model="openai-compatible:Qwen/Qwen2.5-Coder-32B-Instruct@http://localhost:8000/v1", max_output_tokens=1024)
    ranking: ModelSettings = ModelSettings(max_output_tokens=2048)
    testing: ModelSettings = ModelSettings(temperature=0.5, max_output_tokens=4096)
    editing: ModelSettings = ModelSettings(temperature=0.5, max_output_tokens=8192)
    selection: ModelSettings = ModelSettings(max_output_tokens=4096)


class ProviderLimits(Section):
    """Client-side limits per provider; ``None`` means unlimited."""

    max_in_flight: int = Field(32, gt=0)
    requests_per_minute: int | None = Field(None, gt=0)
    tokens_per_minute: int | None = Field(None, gt=0)


class ProviderSettings(Section):
    """How to reach one provider."""

    api_key_env: str | None = None
    base_url: str | None = None
    max_retries: int = Field(8, ge=0)
    timeout_s: float = Field(600.0, gt=0)
    limits: ProviderLimits = ProviderLimits()
    # Newer models (Claude Opus 4.7+, OpenAI reasoning models) reject a temperature:
    # set false to let the provider use its default.
    send_temperature: bool = True


def _default_providers() -> dict[str, ProviderSettings]:
    return {
        "anthropic": ProviderSettings(api_key_env="ANTHROPIC_API_KEY"),
        "openai": ProviderSettings(api_key_env="OPENAI_API_KEY"),
        # Local servers (vLLM, SGLang, Ollama) usually need no key; the base URL
        # comes from the model string (``...@http://host:8000/v1``).
        "openai-compatible": ProviderSettings(api_key_env=None, limits=ProviderLimits(max_in_flight=256)),
    }


class Price(Section):
    """USD per million tokens. A missing cache price falls back to the input price."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cache_read: float | None = Field(None, ge=0)
    cache_write: float | None = Field(None, ge=0)


# --- stages -----------------------------------------------------------------


class ContextConfig(Section):
    """Reading every file, ranking, packing (paper section 3.1).

    Files are candidates when their extension is listed (an empty list takes
    every extension), they match one of ``include_globs`` (when any are given),
    match none of ``exclude_globs``, and (with ``exclude_test_dirs``) no
    directory on their path, at any depth, is a test directory: one named in
    ``test_dir_names``, except (with ``keep_library_test_dirs``) one that holds
    no test module itself (``test_*.py``, ``*_test(s).py``, ``tests.py``,
    ``conftest.py``), which is library code such as ``django/test`` or
    ``sphinx/testing``. Globs are fnmatch patterns on the repo-relative path,
    where ``*`` also crosses ``/``.
    """

    extensions: list[str] = [".py"]
    include_globs: list[str] = []
    exclude_globs: list[str] = []
    exclude_test_dirs: bool = True
    test_dir_names: list[str] = ["tests", "test", "testing"]
    keep_library_test_dirs: bool = True
    max_file_tokens: int = Field(100_000, gt=0)
    ranking_runs: int = Field(3, gt=0)
    # The ranker picks the files worth reading for about this many tokens (the paper's code:
    # 60k); ``budget_tokens`` is the hard cap packing never exceeds.
    target_tokens: int = Field(60_000, gt=0)
    budget_tokens: int = Field(128_000, gt=0)
    # Tokens each editing turn adds to the conversation (answer, test output on the original
    # and the edited code); packing leaves room for ``generation.max_iterations`` of them
    # inside the editing model's context window.
    turn_reserve_tokens: int = Field(6_000, gt=0)
    relevance_reasks: int = Field(1, ge=0)
    ranking_reasks: int = Field(2, ge=0)
    concurrency: int = Field(64, gt=0)


class GenerationConfig(Section):
    """Testing and editing trajectories (paper section 3.2)."""

    trajectories: int = Field(10, gt=0)
    testing_max_turns: int = Field(8, gt=0)
    max_iterations: int = Field(8, gt=0)
    test_timeout_s: float = Field(100.0, gt=0)
    output_limit_chars: int = Field(10_000, gt=100)
    # After each editing turn a changed file is shown whole up to this size, else the regions
    # around the changes (so its current text is always at hand for the next SEARCH).
    changed_file_limit_chars: int = Field(20_000, gt=100)
    warm_cache_first: bool = True


class SelectionConfig(Section):
    """Test voting and the selection trajectory (paper section 3.3)."""

    top_k: int = Field(3, gt=0)
    max_turns: int = Field(8, gt=0)
    flaky_reruns: int = Field(0, ge=0)
    test_timeout_s: float = Field(100.0, gt=0)
    # What the selection model sees of a test run (cut in the middle) and of each edited file.
    output_limit_chars: int = Field(10_000, gt=100)
    file_limit_chars: int = Field(200_000, gt=100)
    # Ensembles: testing trajectories run for an instance that has no tests yet.
    generated_tests: int = Field(10, gt=0)
    # Which candidates the selection trajectory compares: "top_k" narrows them by test votes
    # first; "all" gives it every distinct candidate with no vote (the votes are still run,
    # recorded and used as the fallback). ``candidates`` is for a run's own candidates (the
    # paper votes there); ``ensemble_candidates`` for `codemonkeys ensemble`, where the paper
    # gives every candidate to the selector ("top_k" keeps a large pool affordable).
    candidates: Literal["top_k", "all"] = "top_k"
    ensemble_candidates: Literal["top_k", "all"] = "all"


# --- infrastructure ---------------------------------------------------------


class SandboxConfig(Section):
    """Where model-written code runs."""

    backend: Literal["auto", "docker", "bubblewrap"] = "auto"
    memory: str = "4g"
    pids_limit: int = Field(1024, gt=0)
    cpus: float = Field(1.0, gt=0)
    pool_size: int = Field(8, gt=0)
    output_limit_bytes: int = Field(200_000, gt=1000)
    command_timeout_s: float = Field(600.0, gt=0)
    # bubblewrap only: where private copies of testbeds live (None: the system
    # temp dir), and the unprivileged uid commands run as when started by root.
    work_dir: Path | None = None
    bwrap_uid: int = Field(65534, gt=0)


class EnvironmentConfig(Section):
    """How SWE-bench environment images are obtained."""

    pull_official: bool = True
    official_namespace: str = "swebench"
    image_prefix: str = "codemonkeys"
    python_source: Literal["pyenv"] = "pyenv"
    pyenv_root: Path | None = None
    build_timeout_s: float = Field(3600.0, gt=0)
    exclude_newer: bool = True
    # Where repositories come from: DIR/<owner>__<repo> git mirrors, else GitHub clones in the cache.
    mirror_dir: Path | None = None
    # Build logs and GitHub clones; None means ~/.cache/codemonkeys.
    cache_dir: Path | None = None
    pull_timeout_s: float = Field(60.0, gt=0)
    # Debian packages of the layer all environments share (compilers, libraries for source builds).
    builder_apt_packages: list[str] = [
        "build-essential", "pkg-config", "locales", "wget", "curl", "unzip",
        "libfreetype-dev", "libpng-dev", "libjpeg-dev", "zlib1g-dev", "libffi-dev", "libssl-dev",
        "libxml2-dev", "libxslt1-dev", "libyaml-dev", "libsqlite3-dev", "libbz2-dev", "liblzma-dev",
    ]
    # If the cut-off date makes requirements unsatisfiable, move it this many years later, in turn.
    cutoff_ladder_years: list[int] = [1, 2, 3]
    # Caps on what isolated builds (pip's and uv's) may install: the newest setuptools
    # lacks pkg_resources, which old setup.py files import.
    build_constraints: list[str] = ["setuptools<82"]
    # Editable installs with setuptools >= 64 use a .pth path entry, as older ones did (pylint needs it).
    editable_mode_compat: bool = True
    # Extra environment specs: repo -> version -> fields ("*" for every version), over swebench's.
    spec_overrides: dict[str, dict[str, dict[str, Any]]] = {}
    spec_files: list[Path] = []
    test_timeout_s: float = Field(1800.0, gt=0)
    # Grading's install step: "always" runs it as the harness does (pip without an index: sandboxes
    # are offline); "auto" skips it when the patch touches nothing it builds (setup files, C/Cython).
    grading_reinstall: Literal["always", "auto"] = "always"


class GradingConfig(Section):
    """How patches are graded (``evaluate``, ``report --grade``, ``env validate``)."""

    # The harness's containers have network; ours do not unless this is true. With it, the
    # install step uses what the image has first and reaches the index only for what is
    # missing (a dependency the patch adds), and tests that need the internet can pass.
    network: bool = False


class BudgetConfig(Section):
    """Hard spending limits, enforced live before each call starts."""

    total_usd: float | None = Field(None, gt=0)
    per_instance_usd: float | None = Field(None, gt=0)
    per_trajectory_usd: float | None = Field(None, gt=0)
    stage_shares: dict[str, float] = {}
    # Expected dollars of one testing+editing trajectory, for planning before the run has
    # measured its own (then the mean of finished trajectories is used); None: a token model.
    trajectory_usd_estimate: float | None = Field(None, gt=0)
    # A model without a price under a budget is refused at start unless this is set; then its
    # calls reserve nothing and their cost is reported as unknown.
    allow_unpriced: bool = False

    @property
    def limited(self) -> bool:
        """Whether any limit applies (a stage share needs the run total)."""
        return any(v is not None for v in (self.total_usd, self.per_instance_usd, self.per_trajectory_usd))

    @field_validator("stage_shares")
    @classmethod
    def _shares_in_range(cls, value: dict[str, float]) -> dict[str, float]:
        for stage, share in value.items():
            if not 0 < share <= 1:
                raise ValueError(f"share of stage {stage!r} must be in (0, 1], got {share}")
        return value


class CacheConfig(Section):
    """The response cache: a rerun never pays twice for the same request."""

    responses: bool = True


class RayConfig(Section):
    """Distributed mode."""

    # None starts a Ray instance on this machine; "auto" or "host:6379" joins a running cluster
    # (this machine must be one of its nodes: the store is written on the driver's node).
    address: str | None = None
    # How often an instance's task is rerun when its worker or node is lost.
    max_retries: int = Field(3, ge=0)
    # Ray CPUs each instance's task takes: the scheduler places at most (node CPUs / this) per node.
    cpus_per_instance: float = Field(1.0, gt=0)


class Config(Section):
    """The whole run configuration."""

    models: StageModels = StageModels()
    providers: dict[str, ProviderSettings] = Field(default_factory=_default_providers)
    pricing: dict[str, Price] = {}
    # Model name (prefix) -> context window; the shipped table is the base (configs/context_windows.yaml).
    context_windows: dict[str, PositiveInt] = {}
    context: ContextConfig = ContextConfig()
    generation: GenerationConfig = GenerationConfig()
    selection: SelectionConfig = SelectionConfig()
    sandbox: SandboxConfig = SandboxConfig()
    environment: EnvironmentConfig = EnvironmentConfig()
    grading: GradingConfig = GradingConfig()
    budget: BudgetConfig = BudgetConfig()
    cache: CacheConfig = CacheConfig()
    executor: Literal["local", "ray"] = "local"
    ray: RayConfig = RayConfig()
    max_concurrent_instances: int = Field(4, gt=0)


# --- loading ----------------------------------------------------------------


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a mapping at the top level, got {type(data).__name__}")
    return data


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b.c=value`` into a key path and a YAML-typed value."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} must look like key.path=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML: {exc}") from exc
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with each ``key.path=value`` set."""
    result = _deep_merge({}, data)
    for text in overrides:
        path, value = parse_override(text)
        node = result
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[path[-1]] = value
    return result


def _format_errors(exc: ValidationError, source: str, overrides: list[str]) -> str:
    override_keys = {text.partition("=")[0].strip(): text for text in overrides}
    lines = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"])
        origin = next(
            (f"override {text!r}" for okey, text in override_keys.items() if key == okey or key.startswith(okey + ".") or okey.startswith(key + ".")),
            source,
        )
        message = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
        lines.append(f"{key}: {message} (in {origin})")
    return "invalid config:\n  " + "\n  ".join(lines)


def default_pricing() -> dict[str, Any]:
    """The pricing table shipped in ``configs/pricing.yaml``."""
    path = resource_dir("configs") / "pricing.yaml"
    return _read_yaml(path).get("pricing", {})


def default_context_windows() -> dict[str, Any]:
    """The context-window table shipped in ``configs/context_windows.yaml``."""
    path = resource_dir("configs") / "context_windows.yaml"
    return _read_yaml(path).get("context_windows", {})


def load_config(source: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a config file (path or shipped name) and apply overrides.

    The shipped pricing table is the base of ``pricing``; entries in the file
    or overrides add models or replace prices.
    """
    overrides = list(overrides or [])
    if source is None:
        data: dict[str, Any] = {}
        label = "defaults"
    else:
        path = find_config(source)
        data = _read_yaml(path)
        label = str(path)
    data = apply_overrides(data, overrides)
    if not isinstance(data.get("pricing", {}), dict):
        raise ConfigError(f"pricing: must be a mapping of model name to prices (in {label})")
    data["pricing"] = {**default_pricing(), **data.get("pricing", {})}
    if not isinstance(data.get("context_windows", {}), dict):
        raise ConfigError(f"context_windows: must be a mapping of model name to tokens (in {label})")
    data["context_windows"] = {**default_context_windows(), **data.get("context_windows", {})}
    if isinstance(data.get("providers", {}), dict):
        # Like pricing: listing one provider (or overriding one key) keeps the others' defaults.
        defaults = {name: s.model_dump(exclude_unset=True) for name, s in _default_providers().items()}
        data["providers"] = _deep_merge(defaults, data.get("providers", {}))
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, label, overrides)) from None


def dump_config(config: Config) -> str:
    """The resolved config as YAML, as ``config show`` prints it."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
