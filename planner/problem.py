"""A planning problem: an instance with its model and hardware specs resolved and a scenario applied.

Why it exists
    An instance names its model and hardware by catalog name, but a what-if
    scenario may reach *into* them (``hardware.scale_up_domain_gpus: 8`` turns an
    NVL72 rack into 8-GPU domains). So every command first resolves the instance
    into a :class:`Problem` that holds the specs themselves, applies the scenario's
    dotted overrides to the right spec, and re-validates each one: an override
    that breaks a spec is reported like a bad file, naming the scenario and field.

Override keys
    ``model`` / ``hardware`` (a catalog name or YAML path) swap the spec;
    ``model.<field>`` / ``hardware.<field>`` change one field of it; any other
    dotted key (``traffic.isl_tokens``, ``cluster.max_gpus``, ``slo.ttft_ms_max``)
    changes the instance. Swaps apply before field changes, so
    ``{hardware: b200, hardware.gpus_per_node: 4}`` means "a B200 with 4-GPU nodes".
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import partial
from typing import Any

import pandas as pd
from pydantic import ValidationError

from planner.catalog import (
    check_precision_supported,
    format_validation_error,
    load_hardware,
    load_instance,
    load_model,
)
from planner.class_features import ClassFeatures
from planner.errors import SpecError
from planner.perf.calibration import Calibration
from planner.perf.quantization import for_deployment
from planner.queueing import derate_candidates
from planner.space import candidate_table, instance_max_gpus
from planner.specs import (
    HardwareSpec,
    Instance,
    ModelSpec,
    Phase,
    QuantizationSpec,
    RequestClass,
    SpecModel,
)


@dataclass(frozen=True)
class Problem:
    """An instance with resolved specs: everything the planner needs to answer it."""

    instance: Instance
    model: ModelSpec
    hardware: HardwareSpec
    scenario: str | None = None
    source: str = ""
    """Where the instance came from (catalog name or path), for messages and provenance."""

    @property
    def quantization(self) -> QuantizationSpec:
        """The deployment's formats (:func:`~planner.perf.quantization.for_deployment`).

        The instance's quantization block, then the model's checkpoint weight format, then the
        precision's defaults.
        """
        return for_deployment(self.model, self.instance.precision, self.instance.quantization)

    @property
    def max_gpus(self) -> int:
        """The GPU budget: ``cluster.max_gpus``, ``max_nodes x gpus_per_node``, or the smaller."""
        return instance_max_gpus(self.instance, self.hardware)

    @property
    def traffic_text(self) -> str:
        """``ISL 4096 / OSL 256``, or the mix: ``chat 45% 2048/512, rag 40% 16384/512``."""
        classes = self.request_classes
        if len(classes) == 1:
            return f"ISL {classes[0].isl_tokens} / OSL {classes[0].osl_tokens}"
        return "mix " + ", ".join(
            f"{c.name} {c.share_fraction:.0%} {c.isl_tokens}/{c.osl_tokens}" for c in classes
        )

    @property
    def request_classes(self) -> list[RequestClass]:
        """The traffic's request classes (one named ``all`` for one-shape traffic)."""
        return self.instance.traffic.request_classes

    def request_class(self, name: str | None) -> RequestClass:
        """A class by name; None picks the only one (a mix must be named)."""
        classes = self.request_classes
        if name is None:
            if len(classes) > 1:
                raise SpecError(
                    f"the traffic is a mix of {', '.join(c.name for c in classes)}; name one with "
                    "--request-class",
                    field="traffic",
                )
            return classes[0]
        for cls in classes:
            if cls.name == name:
                return cls
        raise SpecError(
            f"unknown request class '{name}'; the traffic has {', '.join(c.name for c in classes)}",
            field="--request-class",
        )

    def ttft_ms_max(self, cls: RequestClass) -> float:
        """A class's first-token limit: its own, else the instance's."""
        return cls.ttft_ms_max if cls.ttft_ms_max is not None else self.instance.slo.ttft_ms_max

    def candidate_table(
        self,
        phase: Phase,
        calibration: Calibration | None = None,
        *,
        prune: bool = True,
        request_class: str | None = None,
        kv_link_gb_per_s: float | None = None,
    ) -> pd.DataFrame:
        """One phase's candidate table for one request class (:func:`planner.space.candidate_table`)."""
        cls = self.request_class(request_class)
        derate = partial(
            derate_candidates,
            ttft_ms_max=self.ttft_ms_max(cls),
            ttft_percentile=self.instance.slo.ttft_percentile,
            target_utilization_fraction=self.instance.cluster.target_utilization_fraction,
        )
        return candidate_table(
            self.model,
            self.hardware,
            self.quantization,
            phase,
            isl_tokens=cls.isl_tokens,
            osl_tokens=cls.osl_tokens,
            ttft_ms_max=self.ttft_ms_max(cls),
            max_gpus=self.max_gpus,
            calibration=calibration,
            prune=prune,
            derate=derate,
            inter_token_gap_ms_max=self.instance.slo.inter_token_gap_ms_max,
            features=ClassFeatures.of(self.instance, cls),
            kv_link_gb_per_s=kv_link_gb_per_s,
        )

    @property
    def question_text(self) -> str:
        """What is solved, overrides applied: the model, hardware, precision, traffic and TTFT limit.

        E.g. ``qwen3-32b on h200-sxm (fp8), ISL 4000 / OSL 500, TTFT <= 2000 ms``. The instance's
        name (:attr:`label`) stays the same under ``--set model=...``; this names the specs.
        """
        return (
            f"{self.model.name} on {self.hardware.name} ({self.instance.precision}), {self.traffic_text}, "
            f"TTFT <= {self.instance.slo.ttft_ms_max:g} ms"
        )

    @property
    def label(self) -> str:
        """``instance`` or ``instance[scenario]``."""
        return self.instance.name + (f"[{self.scenario}]" if self.scenario else "")

    def resolved(self) -> dict[str, Any]:
        """The whole question as plain data: the instance with its model and hardware specs inline."""
        data = self.instance.model_dump(mode="json", exclude={"scenarios"})
        data["model"] = self.model.model_dump(mode="json")
        data["hardware"] = self.hardware.model_dump(mode="json")
        data["scenario"] = self.scenario
        return data

    def input_hash(self, calibration: Calibration | None = None) -> str:
        """SHA-256 of the resolved question and calibration: equal hashes, equal answers."""
        payload = {"problem": self.resolved()}
        if calibration is not None:
            payload["calibration"] = calibration.model_dump(mode="json")
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def _revalidate(spec: SpecModel, changes: dict[str, Any], where: str, prefix: str = "") -> SpecModel:
    try:
        return spec.update(changes)
    except ValidationError as err:
        field, detail = format_validation_error(err, type(spec))
        if field:
            field, detail = prefix + field, detail.replace(f"'{field}'", f"'{prefix}{field}'", 1)
        kind = type(spec).__name__.removesuffix("Spec").lower()
        message = f"{where} makes the {kind} spec invalid: {detail}; change the override"
        raise SpecError(message, field=field or ", ".join(prefix + key for key in changes)) from None


def resolve(
    name_or_path: str, scenario: str | None = None, overrides: dict[str, Any] | None = None
) -> Problem:
    """Load an instance, apply a named scenario and extra dotted overrides, and resolve its specs."""
    instance = load_instance(name_or_path)
    changes: dict[str, Any] = {}
    if scenario is not None:
        if scenario not in instance.scenarios:
            known = ", ".join(sorted(instance.scenarios)) or "none"
            raise SpecError(
                f"unknown scenario '{scenario}'; this instance defines: {known}",
                path=name_or_path,
                field="scenarios",
            )
        changes.update(instance.scenarios[scenario])
    changes.update(overrides or {})
    where = f"scenario '{scenario}'" if scenario else "the override"

    spec_changes: dict[str, dict[str, Any]] = {"model": {}, "hardware": {}}
    instance_changes: dict[str, Any] = {}
    for key, value in changes.items():
        head, _, rest = key.partition(".")
        if head in spec_changes and rest:
            spec_changes[head][rest] = value
        else:
            instance_changes[key] = value
    if instance_changes:
        instance = _revalidate(instance, instance_changes, where)  # type: ignore[assignment]

    model: SpecModel = load_model(instance.model)
    hardware: SpecModel = load_hardware(instance.hardware)
    if spec_changes["model"]:
        model = _revalidate(model, spec_changes["model"], where, "model.")
    if spec_changes["hardware"]:
        hardware = _revalidate(hardware, spec_changes["hardware"], where, "hardware.")
    check_precision_supported(hardware, instance.precision)  # type: ignore[arg-type]
    return Problem(instance, model, hardware, scenario, name_or_path)  # type: ignore[arg-type]
