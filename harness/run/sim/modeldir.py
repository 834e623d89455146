"""Build the tiny, deterministic model directory (tokenizer + config) the frontend, mocker and AIPerf load."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

# Bump when the files written below change shape: it is part of the cache key.
BUILDER_VERSION = 1
VOCAB_SIZE = 4096
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

# ChatML, because it needs only the special tokens above and renders every role.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@dataclass(frozen=True)
class ModelShape:
    """The attention geometry the mocker derives KV bytes per token from (for disagg transfer timing)."""

    num_hidden_layers: int = 4
    num_attention_heads: int = 8
    num_key_value_heads: int = 8
    head_dim: int = 64
    dtype: str = "bfloat16"

    @property
    def hidden_size(self) -> int:
        return self.num_attention_heads * self.head_dim


# Real geometries of catalogue models, so the mocker's KV transfer cost is the real one.
# DeepSeek-R1's MLA caches 576 values per layer: 1 "head" of 288 x 2 (K+V) matches it.
KNOWN_SHAPES: dict[str, ModelShape] = {
    "qwen3-32b": ModelShape(64, 64, 8, 128),
    "qwen3-235b": ModelShape(94, 64, 4, 128),
    "llama-3.3-70b": ModelShape(80, 64, 8, 128),
    "llama-3-70b": ModelShape(80, 64, 8, 128),
    "gpt-oss-120b": ModelShape(36, 64, 8, 64),
    "deepseek-r1": ModelShape(61, 128, 1, 288),
}


def shape_for(model_name: str) -> ModelShape:
    """The known shape whose key appears in the (lower-cased) HF id or served name; a tiny default else."""
    lowered = model_name.lower()
    for key in sorted(KNOWN_SHAPES, key=len, reverse=True):
        if key in lowered:
            return KNOWN_SHAPES[key]
    return ModelShape()


def corpus_path() -> Path:
    """The text AIPerf ships for synthetic prompts: training on it keeps prompts near 1 token per word."""
    spec = importlib.util.find_spec("aiperf")  # locate without importing: `import aiperf` costs seconds
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("aiperf is not installed: pip install -e '.[sim]'")
    return Path(next(iter(spec.submodule_search_locations))) / "dataset" / "generator" / "assets" / "shakespeare.txt"


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dynamo-recipe-harness" / "modeldirs"


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
        h.update(b"\0")
    return h.hexdigest()[:16]


def config_json(shape: ModelShape, vocab_size: int) -> dict:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": vocab_size,
        "hidden_size": shape.hidden_size,
        "intermediate_size": shape.hidden_size * 4,
        "num_hidden_layers": shape.num_hidden_layers,
        "num_attention_heads": shape.num_attention_heads,
        "num_key_value_heads": shape.num_key_value_heads,
        "head_dim": shape.head_dim,
        "max_position_embeddings": 32768,
        "torch_dtype": shape.dtype,
        "dtype": shape.dtype,
        "bos_token_id": 0,
        "eos_token_id": 2,
    }


def tokenizer_config_json() -> dict:
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "model_max_length": 32768,
        "chat_template": CHAT_TEMPLATE,
        "add_bos_token": False,
        "clean_up_tokenization_spaces": False,
    }


def generation_config_json() -> dict:
    return {"bos_token_id": 0, "eos_token_id": [2], "pad_token_id": 0}


def train_tokenizer_json(corpus: Path, vocab_size: int = VOCAB_SIZE) -> str:
    """A byte-level BPE trained on the corpus; the trainer is deterministic for a given text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train([str(corpus)], trainer)
    return tok.to_str()


def ensure_tokenizer(cache_dir: Path, corpus: Path | None = None) -> Path:
    """tokenizer.json for the corpus, trained once per content hash (about 2 s) and cached."""
    corpus = corpus or corpus_path()
    key = _digest(corpus.read_bytes(), f"bpe-{VOCAB_SIZE}-v{BUILDER_VERSION}".encode())
    path = cache_dir / f"tokenizer-{key}.json"
    if not path.exists():
        _atomic_write(path, train_tokenizer_json(corpus))
    return path


def ensure_model_dir(model_name: str, cache_dir: Path | None = None, corpus: Path | None = None) -> Path:
    """The model directory for a model (shape looked up by name), built once and reused by content hash."""
    cache_dir = cache_dir or default_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    tokenizer_path = ensure_tokenizer(cache_dir, corpus)
    tokenizer_text = tokenizer_path.read_text()
    vocab_size = len(json.loads(tokenizer_text)["model"]["vocab"])  # the trainer puts special tokens in it
    files = {
        "tokenizer.json": tokenizer_text,
        "config.json": _dump(config_json(shape_for(model_name), vocab_size)),
        "tokenizer_config.json": _dump(tokenizer_config_json()),
        "generation_config.json": _dump(generation_config_json()),
    }
    key = _digest(*(f"{n}\n{t}".encode() for n, t in sorted(files.items())))
    target = cache_dir / f"model-{key}"
    if (target / "config.json").exists():
        return target
    # Build beside the target and rename: concurrent sessions never see a half-written dir.
    staging = Path(tempfile.mkdtemp(prefix=".model-", dir=cache_dir))
    for name, text in files.items():
        (staging / name).write_text(text)
    try:
        staging.rename(target)
    except OSError:  # another process won the race; its copy has identical content
        shutil.rmtree(staging, ignore_errors=True)
    return target


def describe(model_dir: Path) -> dict:
    """What the report says about the model dir."""
    cfg = json.loads((model_dir / "config.json").read_text())
    keys = ("vocab_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim")
    return {"path": str(model_dir), **{k: cfg.get(k) for k in keys}}


def _dump(data: dict) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
