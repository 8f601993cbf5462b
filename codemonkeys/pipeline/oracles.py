"""Building oracle models for the instances of a run (dry runs without an API key)."""

from __future__ import annotations

from collections.abc import Mapping

from ..env.grading import build_test_command
from ..env.specs import SpecRegistry
from ..errors import UnknownProviderError
from ..llm.registry import ExtraModelFactory
from ..llm.spec import ModelSpec
from ..llm.types import Model
from ..oracle import OracleModel, reproduction_script
from ..swebench.instances import Instance


def oracle_factory(instances: Mapping[str, Instance], registry: SpecRegistry) -> ExtraModelFactory:
    """Makes an :class:`OracleModel` per (stage, instance) from the instance's gold and test patches."""

    def make(spec: ModelSpec, stage: str, instance_id: str | None) -> Model:
        if spec.provider not in ("oracle", "oracle-noisy"):
            raise UnknownProviderError(f"model {spec.label!r} cannot be used in a run (no such provider here)")
        if instance_id is None or instance_id not in instances:
            raise UnknownProviderError(f"the oracle answers for a known instance only, not {instance_id!r}")
        instance = instances[instance_id]
        env_spec = registry.get(instance.repo, instance.version)
        script = reproduction_script(instance.test_patch, build_test_command(instance, env_spec), env_spec.env_vars)
        return OracleModel(spec, stage, instance_id=instance_id, gold_patch=instance.patch, test_script=script)

    return make
