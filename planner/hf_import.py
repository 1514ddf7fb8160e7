"""Build model specs from Hugging Face ``config.json`` files, and write them back as YAML.

Why this module exists: copying two dozen numbers per model by hand is where
catalog mistakes come from, and every model family spells the same fact
differently (``n_routed_experts`` / ``num_experts`` / ``num_local_experts``,
``experts_per_token`` / ``num_experts_per_tok``, ``layer_types`` /
``sliding_window_pattern``). This is the one place that knows those spellings.
The shipped ``models/*.yaml`` files are what :func:`model_spec_to_yaml` writes
for :func:`import_hf_config` of the published configs (kept as test fixtures in
``tests/fixtures/hf_configs``) plus a comment header, so a test can check the
catalog against the published numbers.

Anything the planner cannot model faithfully (linear or chunked attention,
Mamba hybrids, interleaved MoE, unknown quantization) is a
:class:`~planner.errors.SpecError` naming the HF key, never a silent guess.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from planner.catalog import parse_spec
from planner.errors import SpecError
from planner.safe_input import excerpt, json_load, read_text
from planner.specs import ModelSpec, Precision, SpecModel, WeightFormat

_FULL = "full_attention"
_SLIDING = "sliding_attention"

_UNSUPPORTED_KEYS: dict[str, str] = {
    "attention_chunk_size": "chunked local attention (Llama 4)",
    "interleave_moe_layer_step": "interleaved MoE layers with an implicit shared expert (Llama 4)",
    "attn_type_list": "linear/softmax hybrid attention (MiniMax)",
    "full_attention_interval": "linear-attention hybrid layers (Qwen3-Next)",
    "hybrid_override_pattern": "Mamba/attention hybrid layers (Nemotron-H)",
    "layers_block_type": "Mamba/attention hybrid layers (Jamba)",
    "index_topk": "sparse attention with a top-k indexer (DeepSeek-V3.2)",
}
"""HF keys whose (non-null) presence means an architecture ModelSpec cannot describe."""

_CHECKPOINT_KEYS = ("quantization_config", "torch_dtype", "dtype", "tie_word_embeddings")
"""Keys a multimodal wrapper may keep at the top level rather than in ``text_config``."""

_SIXTEEN_BIT_DTYPES = frozenset({"bfloat16", "float16", "float32"})
_FP8_DTYPES = frozenset({"float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2"})
_FP8_METHODS = frozenset({"fp8", "fbgemm_fp8"})
_FP4_METHODS = frozenset({"mxfp4"})


@dataclass(frozen=True)
class _Reader:
    """Typed access to one (possibly nested) HF config, with errors naming the HF key."""

    config: Mapping[str, Any]
    """The text model's config (``text_config`` for multimodal wrappers)."""
    outer: Mapping[str, Any]
    """The whole file, for checkpoint-level keys a wrapper keeps outside ``text_config``."""
    prefix: str
    """``"text_config."`` when reading a nested config, else empty."""
    path: str | Path | None
    """The file, for error messages."""

    def key(self, key: str) -> str:
        """The HF key as the user sees it in the file."""
        return self.prefix + key

    def error(self, key: str, message: str) -> SpecError:
        """A SpecError naming the file and the HF key."""
        return SpecError(message, path=self.path, field=self.key(key))

    def get(self, key: str) -> Any:
        """The value of a key, None when absent or null."""
        value = self.config.get(key)
        if value is None and key in _CHECKPOINT_KEYS and self.prefix:
            value = self.outer.get(key)
        return value

    def has(self, key: str) -> bool:
        """Whether the key is present and not null."""
        return self.get(key) is not None

    def integer(self, key: str, default: int | None = None) -> int:
        """A required (or defaulted) integer value."""
        value = self.get(key)
        if value is None:
            if default is not None:
                return default
            raise self.error(key, "missing in the HF config; add it from the model's published config.json")
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"expected an integer, got {excerpt(value)}; fix the config")
        return value

    def positive(self, key: str) -> int:
        """A required integer that is at least 1 (a count or a width the importer divides by)."""
        value = self.integer(key)
        if value < 1:
            raise self.error(key, f"must be at least 1, got {value}; fix the config")
        return value

    def flag(self, key: str, default: bool) -> bool:
        """A boolean value, or a default when absent."""
        value = self.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(key, f"expected true or false, got {excerpt(value)}; fix the config")
        return value


def load_hf_config(path: str | Path) -> dict[str, Any]:
    """Read a Hugging Face ``config.json``.

    Raises
    ------
    SpecError
        Naming the file when it cannot be read, is not JSON, or is not an object.
    """
    path = Path(path)
    text = read_text(path, fix="pass the model's config.json")
    try:
        data = json_load(text, path)
    except json.JSONDecodeError as err:
        raise SpecError(
            f"not valid JSON at line {err.lineno}, column {err.colno}: {err.msg}; "
            "fix the syntax or download config.json again",
            path=path,
        ) from None
    if not isinstance(data, dict):
        raise SpecError(
            f"expected a JSON object of config keys, got {type(data).__name__}; pass the model's config.json",
            path=path,
        )
    return data


def model_spec_from_hf_config(config: Mapping[str, Any], name: str, source: str) -> ModelSpec:
    """Map a Hugging Face config dict to a :class:`ModelSpec`.

    Parameters
    ----------
    config
        The parsed ``config.json`` (multimodal wrappers with ``text_config`` are unwrapped).
    name
        Catalog name of the model.
    source
        Where the config comes from, stored in the spec (and used in error messages).

    Raises
    ------
    SpecError
        Naming the HF key when one is missing, malformed or describes an unsupported architecture.
    """
    return _spec_from_config(config, name, source, path=None)


def import_hf_config(path: str | Path, name: str, source: str | None = None) -> ModelSpec:
    """Read a ``config.json`` file and map it to a :class:`ModelSpec`.

    ``source`` defaults to the file path. Every error is a :class:`SpecError` naming the file.
    """
    config = load_hf_config(path)
    return _spec_from_config(config, name, source if source is not None else str(path), path)


def model_spec_to_yaml(spec: ModelSpec, header: str | None = None) -> str:
    """Write a spec as YAML: fields in declaration order, defaults omitted except name/source.

    ``header`` lines, if given, are written first as ``#`` comments.
    """
    data = _non_default_fields(spec, keep=frozenset({"name", "source"}))
    body = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=1_000_000)
    if header is None:
        return body
    comments = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines())
    return comments + body


# --------------------------------------------------------------------------- internals


def _non_default_fields(spec: SpecModel, keep: frozenset[str]) -> dict[str, Any]:
    """Field name -> plain value, in field order, skipping values equal to the field default."""
    out: dict[str, Any] = {}
    for field_name, info in type(spec).model_fields.items():
        value = getattr(spec, field_name)
        if (
            field_name not in keep
            and not info.is_required()
            and value == info.get_default(call_default_factory=True)
        ):
            continue
        out[field_name] = (
            _non_default_fields(value, keep=frozenset()) if isinstance(value, SpecModel) else value
        )
    return out


def _reader(config: Mapping[str, Any], path: str | Path | None) -> _Reader:
    """Unwrap ``text_config`` (multimodal wrappers) into a reader."""
    text_config = config.get("text_config")
    if text_config is None:
        return _Reader(config, config, "", path)
    if not isinstance(text_config, Mapping):
        raise SpecError(
            f"expected an object, got {type(text_config).__name__}; fix the config",
            path=path,
            field="text_config",
        )
    return _Reader(text_config, config, "text_config.", path)


def _spec_from_config(
    config: Mapping[str, Any], name: str, source: str, path: str | Path | None
) -> ModelSpec:
    r = _reader(config, path)
    for key, what in _UNSUPPORTED_KEYS.items():
        if r.has(key):
            raise r.error(
                key,
                f"{what} is not supported by the planner's cost model; "
                "write the model spec by hand with the closest supported shape",
            )

    num_layers = r.integer("num_hidden_layers")
    hidden = r.integer("hidden_size")
    heads = r.positive("num_attention_heads")
    data: dict[str, Any] = {
        "name": name,
        "source": source,
        "num_layers": num_layers,
        "hidden_dim": hidden,
        "num_attention_heads": heads,
        "num_kv_heads": r.integer("num_key_value_heads", default=heads),
        "intermediate_dim": r.integer("intermediate_size"),
        "vocab_size_tokens": r.integer("vocab_size"),
        "tie_word_embeddings": r.flag("tie_word_embeddings", default=False),
    }
    if r.has("kv_lora_rank"):
        mla = _mla(r)
        data["attention"] = "mla"
        data["mla"] = mla
        # MLA has no single head_dim; record the query/key head width (nope + rope).
        data["head_dim"] = mla["qk_nope_head_dim"] + mla["qk_rope_head_dim"]
    else:
        data["head_dim"] = _head_dim(r, hidden, heads)
    data["moe"] = _moe(r, num_layers)
    window, num_sliding = _sliding_window(r, num_layers)
    data["sliding_window_tokens"] = window
    data["num_sliding_window_layers"] = num_sliding
    data["native_precision"] = _precision(r)
    data["checkpoint_weight_format"] = _checkpoint_weight_format(r)
    return parse_spec(data, ModelSpec, path if path is not None else source)


def _head_dim(r: _Reader, hidden: int, heads: int) -> int:
    if r.has("head_dim"):
        return r.integer("head_dim")
    if hidden % heads:
        raise r.error(
            "head_dim",
            f"missing, and hidden_size ({hidden}) is not a multiple of num_attention_heads "
            f"({heads}); add head_dim from the model's published config",
        )
    return hidden // heads


def _mla(r: _Reader) -> dict[str, Any]:
    return {
        "kv_lora_rank_dim": r.integer("kv_lora_rank"),
        "q_lora_rank_dim": r.integer("q_lora_rank") if r.has("q_lora_rank") else None,
        "qk_nope_head_dim": r.integer("qk_nope_head_dim"),
        "qk_rope_head_dim": r.integer("qk_rope_head_dim"),
        "v_head_dim": r.integer("v_head_dim"),
    }


def _moe(r: _Reader, num_layers: int) -> dict[str, Any] | None:
    """The MoE block, from DeepSeek-, Qwen-/OLMoE- or Mixtral-/gpt-oss-style keys."""
    experts_key = next(
        (k for k in ("n_routed_experts", "num_experts", "num_local_experts") if r.has(k)), None
    )
    if experts_key is None or r.integer(experts_key) <= 1:
        return None
    top_k_key = "num_experts_per_tok" if r.has("num_experts_per_tok") else "experts_per_token"
    if not r.has(top_k_key):
        raise r.error(
            "num_experts_per_tok",
            "missing in an MoE config; add the number of routed experts per token",
        )
    width_key = "moe_intermediate_size" if r.has("moe_intermediate_size") else "intermediate_size"
    width = r.positive(width_key)
    num_dense = 0
    num_shared = 0
    if experts_key == "n_routed_experts":  # DeepSeek-V2/V3 style
        if r.get("moe_layer_freq") not in (None, 1):
            raise r.error(
                "moe_layer_freq",
                f"MoE every {r.get('moe_layer_freq')} layers is not supported (only leading "
                "dense layers are); write the model spec by hand",
            )
        num_dense = r.integer("first_k_dense_replace", default=0)
        num_shared = r.integer("n_shared_experts", default=0)
    elif experts_key == "num_experts":  # Qwen-MoE / OLMoE style
        num_dense = _qwen_leading_dense_layers(r, num_layers)
        shared_width = r.integer("shared_expert_intermediate_size", default=0)
        if shared_width % width:
            raise r.error(
                "shared_expert_intermediate_size",
                f"{shared_width} is not a multiple of {r.key(width_key)} ({width}); the "
                "planner models shared experts as whole experts, write the spec by hand",
            )
        num_shared = shared_width // width
    return {
        "num_routed_experts": r.integer(experts_key),
        "num_experts_per_token": r.integer(top_k_key),
        "num_shared_experts": num_shared,
        "expert_intermediate_dim": width,
        "num_dense_layers": num_dense,
    }


def _qwen_leading_dense_layers(r: _Reader, num_layers: int) -> int:
    """Dense layers under Qwen-MoE's rules; they must form a leading block."""
    step = r.integer("decoder_sparse_step", default=1)
    if step <= 0:
        raise r.error("decoder_sparse_step", f"must be >= 1, got {step}; fix the config")
    mlp_only = r.get("mlp_only_layers") or []
    if not isinstance(mlp_only, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) for i in mlp_only
    ):
        raise r.error("mlp_only_layers", f"expected a list of layer indices, got {excerpt(mlp_only)}")
    dense = [i for i in range(num_layers) if i in mlp_only or (i + 1) % step]
    if dense != list(range(len(dense))):
        key = "mlp_only_layers" if mlp_only else "decoder_sparse_step"
        raise r.error(
            key,
            f"dense layers {dense} are not a leading block; the planner supports only "
            "leading dense layers, write the model spec by hand",
        )
    return len(dense)


def _sliding_window(r: _Reader, num_layers: int) -> tuple[int | None, int]:
    """(window tokens, number of sliding layers) from ``layer_types`` or the older keys."""
    layer_types = r.get("layer_types")
    if layer_types is not None:
        if not isinstance(layer_types, list) or len(layer_types) != num_layers:
            raise r.error(
                "layer_types",
                f"expected a list of {num_layers} attention types (one per layer); fix the config",
            )
        unknown = sorted({str(t) for t in layer_types} - {_FULL, _SLIDING})
        if unknown:
            raise r.error(
                "layer_types",
                f"unsupported attention type(s) {', '.join(unknown)}; the planner models "
                f"'{_FULL}' and '{_SLIDING}' only, write the model spec by hand",
            )
        num_sliding = layer_types.count(_SLIDING)
    elif not r.has("sliding_window") or not r.flag("use_sliding_window", default=True):
        return None, 0
    elif r.has("sliding_window_pattern"):  # Gemma 3 / Cohere 2: every pattern-th layer is full
        pattern = r.integer("sliding_window_pattern")
        num_sliding = sum(1 for i in range(num_layers) if (i + 1) % pattern)
    elif r.get("model_type") == "gemma2":  # alternates, starting with a sliding layer
        num_sliding = (num_layers + 1) // 2
    elif r.has("max_window_layers"):  # Qwen2: layers from max_window_layers on slide
        num_sliding = max(0, num_layers - r.integer("max_window_layers"))
    else:  # Mistral 7B v0.1: every layer slides
        num_sliding = num_layers
    if num_sliding == 0:
        return None, 0
    if not r.has("sliding_window"):
        raise r.error("sliding_window", "missing, but some layers use sliding-window attention; add it")
    return r.integer("sliding_window"), num_sliding


def _checkpoint_weight_format(r: _Reader) -> WeightFormat | None:
    """The published weight format where ``quantization_config`` names one exactly, else None.

    ``quant_method: fp8`` with ``weight_block_size: [128, 128]`` is block-FP8 (DeepSeek-V3,
    Qwen3-FP8); ModelOpt's FP8 is per-tensor and its NVFP4 is NVFP4. Other schemes (fbgemm's
    per-channel FP8, other block sizes) have no exact format here and keep the precision's
    default; so does MXFP4 (gpt-oss): engines pad its 2880-wide experts to whole scale blocks
    under tensor parallelism, which the block rule of ``planner.perf.quantization`` does not model.
    """
    quant = r.get("quantization_config")
    if not isinstance(quant, Mapping):
        return None
    method = str(quant.get("quant_method", "")).lower()
    algo = str(quant.get("quant_algo", "")).upper()
    if method == "fp8" and list(quant.get("weight_block_size") or []) == [128, 128]:
        return "fp8_block128"
    if method == "modelopt":
        return {"FP8": "fp8_per_tensor", "NVFP4": "nvfp4"}.get(algo)  # type: ignore[return-value]
    return None


def _precision(r: _Reader) -> Precision:
    """Precision of the published weights: quantization method, else the checkpoint dtype."""
    quant = r.get("quantization_config")
    if quant is not None:
        if not isinstance(quant, Mapping):
            raise r.error("quantization_config", f"expected an object, got {excerpt(quant)}")
        method = str(quant.get("quant_method", "")).lower()
        algo = str(quant.get("quant_algo", "")).upper()
        if method in _FP8_METHODS or (method == "modelopt" and algo == "FP8"):
            return "fp8"
        if method in _FP4_METHODS or (method == "modelopt" and algo == "NVFP4"):
            return "fp4"
        raise r.error(
            "quantization_config.quant_method",
            f"unsupported quantization {method or 'without quant_method'!r} (known: fp8, "
            "fbgemm_fp8, mxfp4, modelopt FP8/NVFP4); import the unquantized model's config",
        )
    dtype_key = "torch_dtype" if r.has("torch_dtype") else "dtype"
    dtype = r.get(dtype_key)
    if dtype is None or dtype in _SIXTEEN_BIT_DTYPES:
        return "bf16"  # the planner's 16-bit class covers fp16 (and fp32) checkpoints too
    if dtype in _FP8_DTYPES:
        return "fp8"
    raise r.error(dtype_key, f"unsupported dtype {excerpt(dtype)}; expected bfloat16, float16 or fp8")
