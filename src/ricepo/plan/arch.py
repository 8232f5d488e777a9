"""A backbone's architecture as the plan needs it, read from its config.json without loading it."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import RicepoError

ARCHITECTURES = Path(__file__).resolve().parents[3] / "config" / "architectures"


@dataclass(frozen=True)
class Arch:
    """What the plan needs from a model's config.json; `params` counted exactly (meta device)."""

    name: str
    params: int
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool  # the output head shares the input embedding's weights

    @property
    def layer_params(self) -> int:
        """Parameters of one decoder layer (the rest: the embedding, the head unless tied, the norm)."""
        return (self.params - self.vocab * self.hidden * (1 if self.tied else 2)) // self.layers

    @property
    def kv_bytes_per_token(self) -> int:
        """Keys and values of every layer for one token, per byte of the cache's dtype."""
        return 2 * self.layers * self.kv_heads * self.head_dim


def read_arch(name: str, config: dict, causal_lm: bool = True) -> Arch:
    """An Arch from a config.json's contents: the model is built on the meta device (no memory)
    to count its parameters as transformers builds them."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    cfg = AutoConfig.for_model(**{k: v for k, v in config.items() if not k.startswith("_")})
    with torch.device("meta"):
        model = (AutoModelForCausalLM if causal_lm else AutoModel).from_config(cfg)
    heads = cfg.num_attention_heads
    return Arch(
        name=name,
        params=sum(p.numel() for p in model.parameters()),
        layers=cfg.num_hidden_layers,
        hidden=cfg.hidden_size,
        intermediate=cfg.intermediate_size,
        heads=heads,
        kv_heads=getattr(cfg, "num_key_value_heads", None) or heads,
        head_dim=getattr(cfg, "head_dim", None) or cfg.hidden_size // heads,
        vocab=cfg.vocab_size,
        tied=bool(getattr(cfg, "tie_word_embeddings", False)),
    )


def arch_file(name: str, model: str) -> Path:
    """Where a model's config.json is read: config/architectures/<name>.json, else its folder."""
    own = ARCHITECTURES / f"{name}.json"
    if own.exists():
        return own
    from ..packaged import resolve

    try:
        folder = Path(resolve(model))
    except Exception:  # a pkg: source that is not installed
        folder = Path(model)
    if (folder / "config.json").exists():
        return folder / "config.json"
    raise RicepoError(
        f"plan: no architecture for {name!r}: add config/architectures/{name}.json (the model's config.json) or build/download {model} first"
    )


@functools.cache
def load_arch(name: str, model: str, causal_lm: bool = True) -> Arch:
    path = arch_file(name, model)
    try:
        return read_arch(name, json.loads(path.read_text()), causal_lm)
    except (ValueError, KeyError, AttributeError) as e:
        raise RicepoError(f"{path}: not a usable config.json ({type(e).__name__}: {e})") from None
