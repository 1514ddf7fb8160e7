"""Typed, strict specs for models, hardware and planning instances.

Every spec derives from :class:`SpecModel`: unknown keys are rejected, values
are frozen, every number is bounded and carries its unit in its name
(``hbm_bandwidth_gb_per_s``, ``ttft_ms_max``), and every field has a one-line
docstring. ``tests/test_spec_contract.py`` enforces that contract for every
subclass, so a new field cannot drift from it.

Unit vocabulary used in field names (1 GB = 1e9 bytes, 1 TFLOP/s = 1e12 FLOP/s):
``num_*`` counts, ``*_dim`` tensor dimensions (elements), ``*_tokens``,
``*_gpus``, ``*_gb``, ``*_gb_per_s``, ``*_tflops_per_s``, ``*_ms``, ``*_us``,
``*_fraction`` (0..1), ``*_ratio`` (dimensionless, >= 1), ``*_usd_per_gpu_hour``,
``*_w`` (watts), ``*_percentile`` (0..100), ``*_per_s`` (rates),
``*_per_s_per_user_min`` (interactivity floors), ``*_nodes`` (node counts), and counts of a named
thing per container: ``gpus_per_node``, ``layouts_per_pool``.
"""

from __future__ import annotations

import numbers
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from planner.errors import SpecError

AttentionKind = Literal["gqa", "mla"]
"""GQA/MHA (per-head K and V cached) or MLA (one compressed latent cached per token)."""

Precision = Literal["bf16", "fp8", "fp4"]
"""Weight/GEMM precision of a deployment."""

PRECISIONS: tuple[Precision, ...] = ("bf16", "fp8", "fp4")

WeightFormat = Literal["bf16", "fp8_per_tensor", "fp8_block128", "nvfp4", "mxfp4", "int4_weight_only"]
"""How GEMM weights are stored: plain bf16, fp8 with one scale per tensor, fp8 with one scale
per 128 x 128 block (DeepSeek-V3, Qwen3-FP8 checkpoints), NVFP4 (16-element blocks),
MXFP4 (32-element blocks) or int4 with bf16 activations (128-element groups)."""

KvCacheDtype = Literal["bf16", "fp8", "fp4"]
"""Element type of the KV cache."""

Phase = Literal["prefill", "decode", "aggregated"]
"""Which work one serving instance does."""

Objective = Literal["max_tokens_per_s_per_gpu", "max_throughput", "min_gpus", "min_cost"]
"""What the planner optimizes for an instance: the most output tokens/s per GPU used; the most
requests/s the whole budget serves (the owned-fleet question); the fewest GPUs or the cheapest
whole nodes serving ``traffic.requests_per_s``."""

LOAD_OBJECTIVES: tuple[str, ...] = ("min_gpus", "min_cost")
"""Objectives that serve a given load (``traffic.requests_per_s``)."""


class SpecModel(BaseModel):
    """Strict, frozen base of every spec: unknown keys are errors, fields self-document.

    ``strict``: a value must already have its field's type, so ``true`` is not read as
    the integer 1, ``1.5`` is not truncated and ``"8"`` is not parsed (ints still fill
    float fields).
    """

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        strict=True,
        use_attribute_docstrings=True,
        validate_default=True,
    )

    def update(self, changes: dict[str, Any]) -> SpecModel:
        """Return a re-validated copy with dotted-key changes applied (``{"moe.num_routed_experts": 64}``)."""
        data = self.model_dump()
        for dotted, value in changes.items():
            node = data
            *parents, leaf = dotted.split(".")
            for depth, key in enumerate(parents):
                if node.get(key) is None:
                    node[key] = {}
                elif not isinstance(node[key], dict):
                    group = ".".join(parents[: depth + 1])
                    raise SpecError(
                        f"'{group}' is a single value, not a group of fields, so '{dotted}' names "
                        f"nothing; set '{group}' itself",
                        field=dotted,
                    )
                node = node[key]
            if isinstance(value, numbers.Integral) and not isinstance(value, int):
                value = int(value)  # a numpy integer from a what-if loop: strict fields take plain ints
            node[leaf] = value
        return type(self).model_validate(data)


# --------------------------------------------------------------------------- models


class MlaSpec(SpecModel):
    """Multi-head latent attention (DeepSeek-V2/V3/R1): the KV cache holds one latent per token."""

    kv_lora_rank_dim: int = Field(gt=0, le=65536)
    """Rank of the compressed KV latent that is cached (HF ``kv_lora_rank``)."""
    q_lora_rank_dim: int | None = Field(default=None, gt=0, le=65536)
    """Rank of the compressed query (HF ``q_lora_rank``); None when queries are not compressed."""
    qk_nope_head_dim: int = Field(gt=0, le=4096)
    """Per-head query/key dimension without rotary embedding (HF ``qk_nope_head_dim``)."""
    qk_rope_head_dim: int = Field(ge=0, le=4096)
    """Per-head rotary query/key dimension, cached once per token (HF ``qk_rope_head_dim``)."""
    v_head_dim: int = Field(gt=0, le=4096)
    """Per-head value dimension (HF ``v_head_dim``)."""


class MoeSpec(SpecModel):
    """Mixture-of-experts feed-forward layers."""

    num_routed_experts: int = Field(gt=1, le=4096)
    """Routed experts per MoE layer (HF ``n_routed_experts`` / ``num_experts`` / ``num_local_experts``)."""
    num_experts_per_token: int = Field(gt=0, le=256)
    """Routed experts each token activates (HF ``num_experts_per_tok``)."""
    num_shared_experts: int = Field(default=0, ge=0, le=64)
    """Always-active shared experts per MoE layer (HF ``n_shared_experts``)."""
    expert_intermediate_dim: int = Field(gt=0, le=1_000_000)
    """Gated-MLP width of one expert (HF ``moe_intermediate_size``)."""
    num_dense_layers: int = Field(default=0, ge=0, le=1000)
    """Leading layers with a dense MLP instead of experts (HF ``first_k_dense_replace``)."""

    @model_validator(mode="after")
    def _experts_per_token_fit(self) -> MoeSpec:
        if self.num_experts_per_token > self.num_routed_experts:
            raise ValueError("num_experts_per_token exceeds num_routed_experts; lower it or add experts")
        return self


class ModelSpec(SpecModel):
    """The architecture facts that decide an LLM's inference cost (names follow HF ``config.json``)."""

    name: str = Field(min_length=1, max_length=100, pattern=r"^[a-z0-9][a-z0-9._-]*$")
    """Catalog name, lower-case (e.g. ``llama-3.1-70b``)."""
    source: str = Field(min_length=1)
    """Where the numbers come from (the published config)."""
    num_layers: int = Field(gt=0, le=1000)
    """Transformer blocks (HF ``num_hidden_layers``)."""
    hidden_dim: int = Field(gt=0, le=262144)
    """Residual stream width (HF ``hidden_size``)."""
    num_attention_heads: int = Field(gt=0, le=4096)
    """Query heads (HF ``num_attention_heads``)."""
    num_kv_heads: int = Field(gt=0, le=4096)
    """Key/value heads for GQA (HF ``num_key_value_heads``); MLA ignores it for the cache."""
    head_dim: int = Field(gt=0, le=4096)
    """Per-head dimension for GQA (HF ``head_dim``, default ``hidden_size / num_attention_heads``)."""
    intermediate_dim: int = Field(gt=0, le=1_000_000)
    """Gated-MLP width of a dense layer (HF ``intermediate_size``)."""
    vocab_size_tokens: int = Field(gt=0, le=10_000_000)
    """Vocabulary size (HF ``vocab_size``)."""
    tie_word_embeddings: bool = False
    """Whether the output head shares the embedding matrix (HF ``tie_word_embeddings``)."""
    attention: AttentionKind = "gqa"
    """Attention kind: ``gqa`` (covers MHA and MQA) or ``mla``."""
    mla: MlaSpec | None = None
    """MLA ranks; required when ``attention`` is ``mla``."""
    moe: MoeSpec | None = None
    """Mixture-of-experts shape; absent for dense models."""
    sliding_window_tokens: int | None = Field(default=None, gt=0, le=10_000_000)
    """Attention window of the sliding-window layers (HF ``sliding_window``); None if none."""
    num_sliding_window_layers: int = Field(default=0, ge=0, le=1000)
    """How many layers use the sliding window (the rest attend to the full context)."""
    native_precision: Precision = "bf16"
    """Precision of the published weights (informational; deployments choose their own)."""
    checkpoint_weight_format: WeightFormat | None = None
    """Weight format of the published checkpoint (HF ``quantization_config``, e.g.
    ``fp8_block128`` for ``quant_method: fp8`` with ``weight_block_size: [128, 128]``); a
    deployment at that format's GEMM precision uses it unless its ``quantization.weights``
    says otherwise. None: the deployment precision's default format."""

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        if self.attention == "mla" and self.mla is None:
            raise ValueError("attention is 'mla' but the 'mla' block is missing; add its ranks")
        if self.attention == "gqa" and self.mla is not None:
            raise ValueError("an 'mla' block is given but attention is 'gqa'; set attention: mla")
        if self.attention == "gqa" and self.num_attention_heads % self.num_kv_heads:
            raise ValueError(
                f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                f"num_kv_heads ({self.num_kv_heads})"
            )
        if self.num_sliding_window_layers > self.num_layers:
            raise ValueError("num_sliding_window_layers exceeds num_layers")
        if self.num_sliding_window_layers and self.sliding_window_tokens is None:
            raise ValueError("num_sliding_window_layers > 0 needs sliding_window_tokens")
        if self.moe is not None and self.moe.num_dense_layers >= self.num_layers:
            raise ValueError("moe.num_dense_layers must be below num_layers")
        return self

    @property
    def is_moe(self) -> bool:
        """Whether the model has expert layers."""
        return self.moe is not None


# --------------------------------------------------------------------------- hardware


class HardwareSpec(SpecModel):
    """One accelerator type as deployed (datasheet peaks; achievable fractions live in calibration)."""

    name: str = Field(min_length=1, max_length=100, pattern=r"^[a-z0-9][a-z0-9._-]*$")
    """Catalog name, lower-case (e.g. ``h100-sxm``)."""
    source: str = Field(min_length=1)
    """Where the numbers come from (datasheet)."""
    generation: str = Field(min_length=1, max_length=40, pattern=r"^[a-z0-9_-]+$")
    """Architecture generation keying the calibration block (``hopper``, ``blackwell``, ``cdna3``)."""
    hbm_capacity_gb: float = Field(gt=0, le=10_000)
    """Device memory per GPU, GB (1e9 bytes)."""
    hbm_bandwidth_gb_per_s: float = Field(gt=0, le=100_000)
    """Peak device-memory bandwidth per GPU, GB/s."""
    bf16_dense_tflops_per_s: float = Field(gt=0, le=100_000)
    """Peak dense BF16 tensor throughput per GPU, TFLOP/s (no sparsity)."""
    fp8_dense_tflops_per_s: float | None = Field(default=None, gt=0, le=100_000)
    """Peak dense FP8 tensor throughput per GPU, TFLOP/s; None if unsupported."""
    fp4_dense_tflops_per_s: float | None = Field(default=None, gt=0, le=100_000)
    """Peak dense FP4 tensor throughput per GPU, TFLOP/s; None if unsupported."""
    scale_up_bandwidth_gb_per_s: float = Field(gt=0, le=100_000)
    """Scale-up (NVLink / Infinity Fabric) bandwidth per GPU, one direction, GB/s."""
    scale_up_domain_gpus: int = Field(gt=0, le=100_000)
    """GPUs that share one scale-up domain (8 on an HGX board, 72 in an NVL72 rack)."""
    scale_up_in_network_reduction: bool = False
    """Whether the scale-up switch reduces in the network (NVLink SHARP / NVLS on NVSwitch
    gen 3+: HGX H100/H200, HGX B200, GB200 NVL72), so an all-reduce moves each byte about once."""
    scale_out_bandwidth_gb_per_s: float = Field(gt=0, le=100_000)
    """Scale-out (InfiniBand / Ethernet) bandwidth per GPU, one direction, GB/s."""
    gpus_per_node: int = Field(gt=0, le=1024)
    """GPUs in one node (the unit a scheduler allocates)."""
    price_usd_per_gpu_hour: float | None = Field(default=None, gt=0, le=10_000)
    """Optional rental or amortized price per GPU-hour, USD, for cost objectives."""
    power_w: float | None = Field(default=None, gt=0, le=100_000)
    """Optional board power per GPU, watts."""

    @model_validator(mode="after")
    def _consistent(self) -> HardwareSpec:
        big, small = (
            max(self.scale_up_domain_gpus, self.gpus_per_node),
            min(self.scale_up_domain_gpus, self.gpus_per_node),
        )
        if big % small:
            raise ValueError(
                f"scale_up_domain_gpus ({self.scale_up_domain_gpus}) and gpus_per_node "
                f"({self.gpus_per_node}) must divide one another"
            )
        return self

    def peak_tflops_per_s(self, precision: Precision) -> float | None:
        """Peak dense tensor throughput at a precision, or None when the GPU lacks it."""
        return {
            "bf16": self.bf16_dense_tflops_per_s,
            "fp8": self.fp8_dense_tflops_per_s,
            "fp4": self.fp4_dense_tflops_per_s,
        }[precision]

    @property
    def supported_precisions(self) -> tuple[Precision, ...]:
        """Precisions with a datasheet peak on this GPU."""
        return tuple(p for p in PRECISIONS if self.peak_tflops_per_s(p) is not None)


# --------------------------------------------------------------------------- instances


class RequestClass(SpecModel):
    """One kind of request in a traffic mix (chat, retrieval with long prompts, reasoning)."""

    name: str = Field(min_length=1, max_length=60, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
    """Class name, used in trace columns (``share_<name>``) and outputs."""
    isl_tokens: int = Field(gt=0, le=10_000_000)
    """Input (prompt) length per request, tokens."""
    osl_tokens: int = Field(gt=0, le=10_000_000)
    """Output (generated) length per request, tokens."""
    share_fraction: float = Field(default=1.0, gt=0, le=1)
    """Fraction of all requests that are of this class (the classes' shares sum to 1)."""
    ttft_ms_max: float | None = Field(default=None, gt=0, le=1e8)
    """This class's first-token limit, ms; None uses the instance's ``slo.ttft_ms_max``."""
    tokens_per_s_per_user_min: float | None = Field(default=None, gt=0, le=1e6)
    """This class's interactivity floor, output tokens/s per user; None: only the study's target applies."""
    draft_acceptance_fraction: float | None = Field(default=None, gt=0, lt=1)
    """Chance the target model accepts each draft token (speculative decoding / MTP); None: no speculation."""
    prefix_cache_hit_fraction: float = Field(default=0.0, ge=0, lt=1)
    """Share of each prompt found in the prefix cache (skipped by prefill and KV transfer)."""
    prefix_cache_tokens: int | None = Field(default=None, gt=0, le=1_000_000_000)
    """Distinct prefix tokens every instance keeps cached to reach that hit rate; None: one prompt's share."""


class Traffic(SpecModel):
    """The requests a deployment serves: one shape (ISL/OSL), or a mix of request classes.

    Write one shape as ``{isl_tokens, osl_tokens}``; a mix as ``classes: [...]``, or
    directly as a list of classes (``traffic: [{name: chat, ...}, ...]``).
    """

    isl_tokens: int | None = Field(default=None, gt=0, le=10_000_000)
    """Input (prompt) length per request, tokens (one-shape traffic)."""
    osl_tokens: int | None = Field(default=None, gt=0, le=10_000_000)
    """Output (generated) length per request, tokens (one-shape traffic)."""
    classes: list[RequestClass] | None = Field(default=None, min_length=1, max_length=16)
    """A traffic mix; instead of ``isl_tokens``/``osl_tokens``."""
    requests_per_s: float | None = Field(default=None, gt=0, le=1e9)
    """Load to serve, requests/s; needed by the ``min_gpus`` and ``min_cost`` objectives."""
    draft_acceptance_fraction: float | None = Field(default=None, gt=0, lt=1)
    """One-shape traffic: chance each draft token is accepted (speculative decoding); None: no speculation."""
    prefix_cache_hit_fraction: float = Field(default=0.0, ge=0, lt=1)
    """One-shape traffic: share of each prompt found in the prefix cache."""
    prefix_cache_tokens: int | None = Field(default=None, gt=0, le=1_000_000_000)
    """One-shape traffic: distinct prefix tokens every instance keeps cached; None: one prompt's share."""

    @model_validator(mode="before")
    @classmethod
    def _list_is_a_mix(cls, data: Any) -> Any:
        return {"classes": data} if isinstance(data, list) else data

    @model_validator(mode="after")
    def _one_form(self) -> Traffic:
        shape = (self.isl_tokens, self.osl_tokens)
        if self.classes is None:
            if None in shape:
                raise ValueError("give isl_tokens and osl_tokens, or a list of request classes")
            return self
        if shape != (None, None):
            raise ValueError("give either isl_tokens/osl_tokens or classes, not both")
        if (
            self.draft_acceptance_fraction is not None
            or self.prefix_cache_hit_fraction
            or self.prefix_cache_tokens
        ):
            raise ValueError(
                "with classes, set draft_acceptance_fraction and prefix_cache_* on each class, not on traffic"
            )
        names = [c.name for c in self.classes]
        if len(set(names)) != len(names):
            raise ValueError(f"request class names repeat ({', '.join(names)}); make them unique")
        total = sum(c.share_fraction for c in self.classes)
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"class share_fraction values sum to {total:g}; make them sum to 1")
        return self

    @property
    def request_classes(self) -> list[RequestClass]:
        """The classes of the mix; one-shape traffic is one class named ``all``."""
        if self.classes is not None:
            return list(self.classes)
        return [
            RequestClass(
                name="all",
                isl_tokens=self.isl_tokens,
                osl_tokens=self.osl_tokens,
                draft_acceptance_fraction=self.draft_acceptance_fraction,
                prefix_cache_hit_fraction=self.prefix_cache_hit_fraction,
                prefix_cache_tokens=self.prefix_cache_tokens,
            )
        ]

    @property
    def is_mix(self) -> bool:
        """True when the traffic has more than one request class."""
        return self.classes is not None and len(self.classes) > 1


class Slo(SpecModel):
    """Service-level objectives."""

    ttft_ms_max: float = Field(default=10_000.0, gt=0, le=1e8)
    """Largest acceptable time to first token, ms (prefill plus KV transfer)."""
    inter_token_gap_ms_max: float | None = Field(default=None, gt=0, le=1e8)
    """Largest acceptable gap between two output tokens of a request, ms: in co-located
    serving a decode step that carries a prompt chunk or waits for a prefill; None: no limit."""
    tokens_per_s_per_user_targets: list[Annotated[float, Field(gt=0, le=1e6)]] | None = Field(
        default=None, min_length=1
    )
    """Interactivity targets (output tokens/s per user) to report; None traces the exact frontier."""
    ttft_percentile: float | None = Field(default=None, ge=50, lt=100)
    """Percentile of requests whose TTFT, queueing wait included, must fit ``ttft_ms_max`` (e.g. 99);
    None: the no-queue TTFT of one request must fit (pools may run at full utilisation)."""

    @model_validator(mode="after")
    def _sorted_targets(self) -> Slo:
        targets = self.tokens_per_s_per_user_targets
        if targets and sorted(set(targets)) != targets:
            raise ValueError("tokens_per_s_per_user_targets must be increasing without repeats; sort them")
        return self


class FleetEntry(SpecModel):
    """One GPU type of a mixed fleet: which hardware, how many nodes of it, at what price."""

    hardware: str = Field(min_length=1)
    """Catalog name (or YAML path) of the GPU type."""
    max_nodes: int = Field(gt=0, le=1_000_000)
    """Nodes of this type the plan may use (GPUs per node come from the hardware)."""
    price_usd_per_gpu_hour: float | None = Field(default=None, gt=0, le=10_000)
    """Price per GPU-hour of this type, USD; None: the hardware spec's price."""


class Cluster(SpecModel):
    """The GPU budget a plan must fit in."""

    max_gpus: int | None = Field(default=None, gt=0, le=10_000_000)
    """Largest number of GPUs the plan may use."""
    max_nodes: int | None = Field(default=None, gt=0, le=1_000_000)
    """Largest number of nodes the plan may use (GPUs per node come from the hardware)."""
    exclusive_nodes: bool = False
    """Give each pool whole nodes (prefill and decode never share a node)."""
    target_utilization_fraction: float = Field(default=1.0, gt=0, le=1)
    """Largest share of an instance's capacity the plan may load it with (headroom for bursts)."""
    fleet: list[FleetEntry] | None = Field(default=None, min_length=1, max_length=8)
    """A mixed fleet (``disagg fleet``): GPU types with their own node inventory and price; each
    instance runs on one type. ``max_gpus`` / ``max_nodes`` still bound the whole plan."""

    @model_validator(mode="after")
    def _some_budget(self) -> Cluster:
        if self.max_gpus is None and self.max_nodes is None:
            raise ValueError("set cluster.max_gpus or cluster.max_nodes (or both)")
        names = [entry.hardware for entry in self.fleet or []]
        if len(set(names)) != len(names):
            raise ValueError(f"cluster.fleet names a GPU type twice ({', '.join(names)}); merge the entries")
        return self


class Elastic(SpecModel):
    """How fast and how far pools may change over time (``disagg elastic``)."""

    ramp_limit_gpus: int | None = Field(default=None, ge=0, le=10_000_000)
    """Most GPUs that may be added or removed between consecutive periods; None: no limit."""
    min_pool_gpus: int = Field(default=0, ge=0, le=10_000_000)
    """Fewest GPUs every pool keeps in every period (warm capacity)."""
    allow_relayout: bool = False
    """Let each period pick its own layouts (an engine rebuild per period); default: layouts fixed."""


class QuantizationSpec(SpecModel):
    """Weight format, activation (GEMM) precision and KV-cache dtype as separate choices.

    A field left out takes the default of the deployment's ``precision``
    (:meth:`for_precision`): bf16 everywhere; fp8 per-tensor weights with fp8 GEMMs and
    an fp8 cache; NVFP4 weights with fp4 GEMMs and an fp8 cache.
    """

    weights: WeightFormat | None = None
    """How GEMM weights are stored (``fp8_block128``, ``nvfp4``, ...); None: the precision's default."""
    activations: Precision | None = None
    """Precision the GEMMs run at (the calibration block's precision); None: ``precision``."""
    kv_cache: KvCacheDtype | None = None
    """KV-cache element type; None: the precision's default (bf16 for bf16, else fp8)."""

    @classmethod
    def for_precision(cls, precision: Precision) -> QuantizationSpec:
        """The formats a deployment at ``precision`` uses unless told otherwise."""
        weights: dict[Precision, WeightFormat] = {"bf16": "bf16", "fp8": "fp8_per_tensor", "fp4": "nvfp4"}
        kv: dict[Precision, KvCacheDtype] = {"bf16": "bf16", "fp8": "fp8", "fp4": "fp8"}
        return cls(weights=weights[precision], activations=precision, kv_cache=kv[precision])

    def resolved(self, precision: Precision) -> QuantizationSpec:
        """Every field filled: the given ones, the rest from ``precision``'s defaults."""
        activations = self.activations or precision
        base = QuantizationSpec.for_precision(activations)
        return QuantizationSpec(
            weights=self.weights or base.weights,
            activations=activations,
            kv_cache=self.kv_cache or base.kv_cache,
        )


class SpeculationOptions(SpecModel):
    """Speculative decoding the planner may switch on per decode layout (classes with an acceptance rate)."""

    draft_tokens: list[Annotated[int, Field(ge=0, le=16)]] = Field(
        default_factory=lambda: [0, 1, 2, 3], min_length=1
    )
    """Draft tokens per step the planner may choose from (0 = off); each is priced as its own layout."""
    num_draft_layers: int = Field(default=1, ge=1, le=1000)
    """Layers one draft token runs through: 1 for an MTP or EAGLE head (DeepSeek-V3 ships one MTP module)."""

    @model_validator(mode="after")
    def _sorted_options(self) -> SpeculationOptions:
        if sorted(set(self.draft_tokens)) != self.draft_tokens:
            raise ValueError("draft_tokens must be increasing without repeats; sort them")
        return self


class Instance(SpecModel):
    """One planning question: which deployment of a model on a cluster serves a traffic best."""

    name: str = Field(min_length=1, max_length=200)
    """Instance name, used in output file names."""
    description: str = ""
    """A sentence on what the instance asks."""
    model: str = Field(min_length=1)
    """Catalog name of the model (``disagg list models``)."""
    hardware: str = Field(min_length=1)
    """Catalog name of the hardware (``disagg list hardware``)."""
    precision: Precision = "fp8"
    """Weight/GEMM precision."""
    quantization: QuantizationSpec | None = None
    """Weight format, GEMM precision and KV-cache dtype when they differ from ``precision``'s
    defaults (e.g. ``{weights: fp8_block128}``); None: the defaults."""
    traffic: Traffic
    """Request shape and load."""
    slo: Slo = Slo()
    """Latency objectives."""
    cluster: Cluster
    """GPU or node budget."""
    objective: Objective = "max_tokens_per_s_per_gpu"
    """What to optimize."""
    layouts_per_pool: int = Field(default=1, ge=1, le=8)
    """Distinct layouts allowed within one pool."""
    elastic: Elastic = Elastic()
    """Ramp and pool-size limits for elastic plans over a traffic trace."""
    speculation: SpeculationOptions = SpeculationOptions()
    """Draft-token counts tried for classes with a ``draft_acceptance_fraction`` (speculative decoding)."""
    scenarios: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Named what-if overrides: dotted field -> value, applied with ``--scenario NAME``."""

    @model_validator(mode="after")
    def _quantization_matches_precision(self) -> Instance:
        q = self.quantization
        if q is not None and q.activations is not None and q.activations != self.precision:
            raise ValueError(
                f"quantization.activations ({q.activations}) differs from precision ({self.precision}); "
                f"set precision: {q.activations} or drop quantization.activations"
            )
        return self

    @property
    def quantization_spec(self) -> QuantizationSpec:
        """The deployment's formats with every field resolved, without a model's checkpoint format.

        ``planner.perf.quantization.for_deployment`` adds the model's format.
        """
        return (self.quantization or QuantizationSpec()).resolved(self.precision)
