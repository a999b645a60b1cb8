"""Eval sets in the common schema: the bundled ones by name, or any ``.jsonl`` / ``.jsonl.gz`` file.

One JSON object per line: ``id``, ``question``, ``answers`` (a list of strings, empty for
unanswerable), ``chunks`` (objects with ``id`` and ``text``; ``title`` and ``gold``
optional) and ``meta``. Other keys are allowed and ignored (DESIGN.md): unknown top-level keys
land in :attr:`Example.meta`, every other chunk key (``score``, ``embedding``, ``gold_spans``,
``metadata``, ...) in the chunk's ``metadata``, as given: never checked, never refused, never read
as a score or a vector (a ``retrieval`` key in ``meta`` or a ``gold`` inside a chunk's ``metadata``
is the caller's data). ``chunk_scores=True`` (``ragtrim eval --chunk-scores``) reads a chunk's
``score`` and ``embedding`` as the retriever's, for a file that carries them on purpose. A
chunk's ``gold`` is true, false or null (null: not given, so not gold). A
file that breaks the schema raises ``ValueError`` naming the file, the line and the field, and
a key other tools use for a missing field (``answer``, ``query``, ``contexts``,
``page_content``, ...) is named in the fix ("did you mean ...").

>>> list_datasets()
['hotpotqa', '2wiki', 'squad2-pools', 'nq-multidoc']
>>> ds = load_dataset("2wiki", limit=2)
>>> len(ds), ds.name
(2, '2wiki')
>>> ex = ds.examples[0]
>>> len(ex.chunks), len(ex.gold_ids) >= 2, ex.chunks[0].metadata["gold"] in (True, False)
(10, True, True)
"""

from __future__ import annotations

import difflib
import json
import math
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optimizer.jsonl import format_hint, iter_jsonl, open_text
from optimizer.validate import positive_int
from optimizer.records import SURROGATE_FIX, Chunk, FrozenDict, check_no_surrogate, lone_surrogate

_INSTALLED = Path(__file__).resolve().with_name("bundled")  # what a wheel carries (see setup.py)
_CHECKOUT = Path(__file__).resolve().parent.parent / "datasets"  # a source checkout or editable install


def bundled_dir() -> Path:
    """The folder holding the bundled sets: inside the installed package, else the checkout's ``datasets/``.

    >>> (bundled_dir() / "hotpotqa.jsonl").is_file()
    True
    """
    return _INSTALLED if (_INSTALLED / "hotpotqa.jsonl").is_file() else _CHECKOUT
BUNDLED = ("hotpotqa", "2wiki", "squad2-pools", "nq-multidoc")
_SUFFIXES = (".jsonl", ".jsonl.gz")
_KNOWN = {"id", "question", "answers", "chunks", "meta"}


@dataclass(frozen=True)
class Example:
    """One question with its candidate chunks.

    ``chunks`` are :class:`optimizer.Chunk` records; the dataset's ``gold`` field and every
    extra chunk key (e.g. the bundled sets' ``gold_spans``) are in each chunk's ``metadata``.
    ``meta`` is the dataset's own (its ``meta`` object and unknown top-level keys), never read
    by the harness; ``retrieval``
    is the harness's record of how the chunks were retrieved (set by
    :func:`evals.retrieval.retrieve_dataset`, None otherwise), kept apart so that no key of a
    user's ``meta`` can stand in for it. Both are held as read-only dicts (:class:`~optimizer.records.FrozenDict`),
    so an example pickles (a multiprocessing pool, a cache) and deep-copies, unlike a ``MappingProxyType``.

    >>> import pickle
    >>> ex = parse_example({"id": "q1", "question": "Who?", "answers": [], "chunks": [{"id": "a", "text": "x"}], "meta": {"n": 1}})
    >>> pickle.loads(pickle.dumps(ex)) == ex
    True
    """

    id: str
    question: str
    answers: tuple[str, ...]
    chunks: tuple[Chunk, ...]
    meta: Mapping[str, Any]
    retrieval: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        for name in ("meta", "retrieval"):
            value = getattr(self, name)
            if isinstance(value, Mapping) and not isinstance(value, FrozenDict):
                object.__setattr__(self, name, FrozenDict(value))

    @property
    def gold_ids(self) -> tuple[str, ...]:
        """Ids of the chunks marked ``gold: true``, in chunk order (empty when the source marks none)."""
        return tuple(c.id for c in self.chunks if c.metadata.get("gold") is True)

    def to_dict(self) -> dict[str, Any]:
        """The example as a schema object (what a line of the file holds)."""
        chunks = []
        for c in self.chunks:
            d: dict[str, Any] = {"id": c.id}
            if c.title is not None:
                d["title"] = c.title
            d["text"] = c.text
            if c.score is not None:
                d["score"] = c.score
            d.update(c.metadata)
            chunks.append(d)
        return {"id": self.id, "question": self.question, "answers": list(self.answers), "chunks": chunks, "meta": dict(self.meta)}


@dataclass(frozen=True)
class Dataset:
    """A loaded eval set: its name, the file it came from and its examples in file order.

    ``chunk_scores``: whether the chunks' ``score`` and ``embedding`` were read (:func:`load_dataset`).
    """

    name: str
    path: Path
    examples: tuple[Example, ...]
    chunk_scores: bool = False

    def __len__(self) -> int:
        return len(self.examples)

    def __iter__(self) -> Iterator[Example]:
        return iter(self.examples)

    def __repr__(self) -> str:
        return f"Dataset(name={self.name!r}, path={str(self.path)!r}, n={len(self.examples)})"


def list_datasets() -> list[str]:
    """Names of the bundled eval sets (see ``datasets/README.md``)."""
    return list(BUNDLED)


def dataset_path(name: str) -> Path:
    """Path of bundled set ``name``.

    >>> dataset_path("hotpotqa").name
    'hotpotqa.jsonl'
    """
    if name not in BUNDLED:
        close = difflib.get_close_matches(str(name), BUNDLED, n=2, cutoff=0.5)
        hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise ValueError(
            f"unknown dataset {name!r}.{hint} Bundled sets: {', '.join(BUNDLED)}; "
            "or pass the path of a .jsonl / .jsonl.gz file in the common schema"
        )
    path = bundled_dir() / f"{name}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(
            f"bundled dataset file {str(path)!r} is missing; a wheel carries the sets inside the package and a "
            "checkout has them in datasets/ (reinstall ragtrim, or rebuild the file with "
            f"`python datasets/build.py --only {name}` in a checkout)"
        )
    return path


# endings that mark a file name rather than a bundled set's name (a missing file then says "no such file")
_FILE_ENDINGS = (*_SUFFIXES, ".json", ".json.gz", ".gz", ".csv", ".tsv", ".txt", ".parquet", ".jsonlines", ".ndjson")


def _is_path(value: str | Path) -> bool:
    """Whether ``value`` names a file (a path, or a name with a file ending such as ``.json``) rather than a bundled set.

    >>> _is_path("hotpotqa"), _is_path("data.json"), _is_path("runs/x"), _is_path("data.csv")
    (False, True, True, True)
    """
    if isinstance(value, Path):
        return True
    return value.lower().endswith(_FILE_ENDINGS) or "/" in value or "\\" in value or Path(value).is_file()


def _check_file(path: Path) -> None:
    """A missing or non-file dataset path raises FileNotFoundError saying what a dataset can be."""
    if path.is_file() or str(path) == "-":
        return
    if path.is_dir():
        raise FileNotFoundError(f"dataset {str(path)!r} is a folder; pass a .jsonl / .jsonl.gz file in the common schema")
    stem = _name_of(path).split(".")[0]
    close = difflib.get_close_matches(stem, BUNDLED, n=1, cutoff=0.8)
    hint = f" (did you mean the bundled set {close[0]!r}, written without a file ending?)" if close else ""
    raise FileNotFoundError(
        f"no such file: {str(path)!r}{hint}; pass the path of a .jsonl / .jsonl.gz file in the common schema or a "
        f"bundled set ({', '.join(BUNDLED)})"
    )


def _name_of(path: Path) -> str:
    name = path.name
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def check_source(name_or_path: str | Path) -> None:
    """Raise what :func:`load_dataset` would for a dataset that is not there (an unknown name, a missing file), reading
    nothing: a command checks ``--data`` with it before creating its output folder.

    >>> check_source("hotpotqa")
    >>> check_source("nope.jsonl")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileNotFoundError: no such file: 'nope.jsonl'; ...
    """
    if _is_path(name_or_path):
        _check_file(Path(name_or_path))
    else:
        dataset_path(str(name_or_path))


def load_dataset(name_or_path: str | Path, *, limit: int | None = None, chunk_scores: bool = False) -> Dataset:
    """Load a bundled set by name, or any ``.jsonl`` / ``.jsonl.gz`` file in the common schema.

    Parameters
    ----------
    name_or_path:
        One of :func:`list_datasets`, or a path.
    limit:
        Keep only the first ``limit`` examples (the rest of the file is not read).
    chunk_scores:
        Read each chunk's ``score`` and ``embedding`` as the retriever's (checked: a malformed one raises),
        for files that carry a retriever's output. Off by default: like every key outside the schema
        (``id``, ``title``, ``text``, ``gold``), they are kept in the chunk's ``metadata`` and not read.
    """
    if limit is not None:
        positive_int(limit, "limit", what="examples")
    if not isinstance(name_or_path, (str, Path)):
        raise TypeError(f"pass a dataset name or a file path, got {type(name_or_path).__name__}: {name_or_path!r:.80}")
    if _is_path(name_or_path):
        path, name = Path(name_or_path), _name_of(Path(name_or_path))
        _check_file(path)
    else:
        path, name = dataset_path(str(name_or_path)), str(name_or_path)
    examples: list[Example] = []
    seen: dict[str, str] = {}
    stream = open_text(path)
    try:
        for line, obj in iter_jsonl(stream, name=str(path)):
            if not examples and isinstance(obj, list):
                raise ValueError(f"{path}, line {line}: expected a JSON object with 'id', 'question', 'answers' and "
                                 f"'chunks', got a list; {format_hint('[', str(path))}")
            example = parse_example(obj, where=f"{path}, line {line}", chunk_scores=chunk_scores)
            note_id(seen, example.id, f"line {line}", where=f"{path}, line {line}")
            examples.append(example)
            if limit is not None and len(examples) >= limit:
                break
    finally:
        if stream is not sys.stdin:
            stream.close()
    if not examples:
        raise ValueError(f"{path}: no examples found; the file must hold one JSON object per line")
    return Dataset(name=name, path=path, examples=tuple(examples), chunk_scores=chunk_scores)


def note_id(seen: dict[str, str], ex_id: Any, at: str, *, where: str) -> None:
    """Record example id ``ex_id``, found at ``at``, in ``seen``; ValueError naming the id and both places when it is
    there already.

    Ids are compared as the eval's rows hold them (``str``), which pair an example's rows across arms by id: two
    examples with one id would be asked each other's question and paired with each other's full context.

    >>> seen = {}
    >>> note_id(seen, "q1", "line 1", where="data.jsonl, line 1")
    >>> note_id(seen, "q1", "line 4", where="data.jsonl, line 4")
    Traceback (most recent call last):
    ...
    ValueError: data.jsonl, line 4: field 'id': duplicate example id 'q1' (first on line 1); give every example a unique id
    """
    key = str(ex_id)
    if key in seen:
        raise ValueError(f"{where}: field 'id': duplicate example id {key!r} (first on {seen[key]}); "
                         "give every example a unique id")
    seen[key] = at


def check_unique_ids(examples: Iterable[Any], name: str) -> None:
    """ValueError when two of ``examples`` (built in Python: :class:`Example` or anything with an ``id``) share an id,
    naming it and both positions, as :func:`load_dataset` does for a file's lines.

    >>> from types import SimpleNamespace as S
    >>> check_unique_ids([S(id="a"), S(id="b"), S(id="a")], "mine")
    Traceback (most recent call last):
    ...
    ValueError: dataset 'mine', examples[2]: field 'id': duplicate example id 'a' (first on examples[0]); give every example a unique id
    """
    seen: dict[str, str] = {}
    for k, ex in enumerate(examples):
        note_id(seen, ex.id, f"examples[{k}]", where=f"dataset {name!r}, examples[{k}]")


def parse_example(obj: Any, *, where: str = "example", chunk_scores: bool = False) -> Example:
    """Check one schema object and build its :class:`Example`; ``where`` prefixes error messages.

    ``chunk_scores``: read the chunks' ``score`` and ``embedding`` (see :func:`load_dataset`).

    >>> parse_example({"id": "q1", "question": "Who?", "answers": [], "chunks": [{"id": "a", "text": "x"}]}).id
    'q1'
    >>> parse_example({"id": "q1", "question": "Who?", "answers": "Paris", "chunks": []})
    Traceback (most recent call last):
    ...
    ValueError: example (id 'q1'): field 'answers': expected a list of strings, got str 'Paris'; write "answers": ["Paris"] (or [] when unanswerable)
    """
    if not isinstance(obj, Mapping):
        raise ValueError(
            f"{where}: expected a JSON object with 'id', 'question', 'answers' and 'chunks', got {type(obj).__name__}"
        )
    ex_id = obj.get("id")
    if isinstance(ex_id, int) and not isinstance(ex_id, bool):
        ex_id = str(ex_id)
    if not isinstance(ex_id, str) or not ex_id:
        raise _error(where, "id", "a non-empty string", _show(obj, "id"), "give every example a unique id")
    where = f"{where} (id {ex_id!r})"
    question = obj.get("question")
    if not isinstance(question, str) or not question.strip():
        raise _error(where, "question", "a non-empty string", _show(obj, "question"),
                     _did_you_mean(obj, "question") or "add the question text")
    answers = obj.get("answers")
    if isinstance(answers, list):
        _check_answers(where, answers)
    if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
        fix = _did_you_mean(obj, "answers") or f"{_answers_fix(answers)} (or [] when unanswerable)"
        raise _error(where, "answers", "a list of strings", _show(obj, "answers"), fix)
    _check_text(where, "question", question)
    for k, answer in enumerate(answers):
        _check_text(where, f"answers[{k}]", answer)
    chunks = _parse_chunks(obj, ex_id, where, chunk_scores=chunk_scores)
    meta = obj.get("meta") if obj.get("meta") is not None else {}
    if not isinstance(meta, Mapping):
        raise _error(where, "meta", "an object", _show(obj, "meta"), "use {} or remove it")
    meta = dict(meta)
    for key, value in obj.items():
        if key not in _KNOWN:
            meta.setdefault(key, value)
    return Example(id=ex_id, question=question, answers=tuple(answers), chunks=chunks, meta=FrozenDict(meta))


def _answers_fix(answers: Any) -> str:
    """How to write ``answers`` as a list of strings: a lone string in a list, SQuAD's ``{"text": [...]}`` as its list.

    >>> _answers_fix("Paris"), _answers_fix({"text": ["Paris"], "answer_start": [0]}), _answers_fix(3)
    ('write "answers": ["Paris"]', 'write "answers": ["Paris"] (the "text" list of a SQuAD-style answers object)', 'e.g. "answers": ["Paris"]')
    """
    if isinstance(answers, str):
        return f'write "answers": [{json.dumps(answers, ensure_ascii=False)}]'
    texts = answers.get("text") if isinstance(answers, Mapping) else None
    if isinstance(texts, list) and all(isinstance(t, str) for t in texts):
        return f'write "answers": {json.dumps(texts, ensure_ascii=False)} (the "text" list of a SQuAD-style answers object)'
    return 'e.g. "answers": ["Paris"]'


def _check_answers(where: str, answers: list[Any]) -> None:
    """Each answer is a string; the first that is not raises naming its position and the list to write instead.

    >>> _check_answers("f.jsonl, line 2", [1990])
    Traceback (most recent call last):
    ...
    ValueError: f.jsonl, line 2: field 'answers': item answers[0] is int 1990, not a string; answers are matched as text: write "answers": ["1990"]
    """
    for k, answer in enumerate(answers):
        if isinstance(answer, str):
            continue
        fixed = _answers_as_text(answers)
        fix = (f'answers are matched as text: write "answers": {json.dumps(fixed, ensure_ascii=False)}' if fixed is not None
               else 'give every answer as a string, e.g. "answers": ["Paris", "City of Paris"] (or [] when unanswerable)')
        raise ValueError(f"{where}: field 'answers': item answers[{k}] is {_describe(answer)}, not a string; {fix}")


def _answers_as_text(answers: list[Any]) -> list[str] | None:
    """The answers with numbers written as text and nested lists of aliases flattened (None if that is not enough)."""
    out: list[str] = []
    for a in answers:
        if isinstance(a, list):
            if not all(isinstance(x, str) for x in a):
                return None
            out.extend(a)
        elif isinstance(a, str):
            out.append(a)
        elif isinstance(a, (int, float)) and not isinstance(a, bool) and math.isfinite(a):
            out.append(json.dumps(a))
        else:
            return None
    return out


_CHUNK_FIELDS = ("id", "title", "text", "gold")
"""The chunk fields of the common schema the loader reads; any other key is the caller's (kept in ``metadata``)."""

RETRIEVER_FIELDS = ("score", "embedding")
"""Chunk keys read as the retriever's score and vector only when asked (``chunk_scores=True``, ``--chunk-scores``)."""


def _parse_chunks(obj: Mapping[str, Any], ex_id: str, where: str, *, chunk_scores: bool = False) -> tuple[Chunk, ...]:
    raw = obj.get("chunks")
    if not isinstance(raw, list):
        raise _error(where, "chunks", "a list of objects with 'id' and 'text'", _show(obj, "chunks"),
                     _did_you_mean(obj, "chunks") or "use [] for no passages")
    chunks: list[Chunk] = []
    seen: dict[str, int] = {}
    dims: dict[int, int] = {}  # embedding length -> first chunk with it (chunk_scores only)
    for k, item in enumerate(raw):
        field = f"chunks[{k}]"
        if not isinstance(item, Mapping):
            raise _error(where, field, "an object with 'id' and 'text'", _describe(item), _chunk_shape(item, f"{ex_id}-{k}"))
        cid = item.get("id")
        if isinstance(cid, int) and not isinstance(cid, bool):
            cid = str(cid)
        if not isinstance(cid, str) or not cid:
            raise _error(where, f"{field}.id", "a non-empty string", _show(item, "id"), "give every chunk an id unique in its example")
        if not isinstance(item.get("text"), str):
            raise _error(where, f"{field}.text", "a string", _show(item, "text"),
                         _did_you_mean(item, "text") or "put the passage text in 'text'")
        if cid in seen:
            raise ValueError(
                f"{where}: field '{field}.id': duplicate chunk id {cid!r} (also chunks[{seen[cid]}]); chunk ids must be "
                "unique within an example, e.g. '<example id>-<position>'"
            )
        seen[cid] = k
        if item.get("gold") is not None and not isinstance(item["gold"], bool):
            raise _error(where, f"{field}.gold", "true, false or null", _show(item, "gold"),
                         "mark evidence chunks with \"gold\": true (leave it out, false or null for the others)")
        retriever = _retriever_fields(item, where, k, cid, dims) if chunk_scores else {}
        try:
            chunk = Chunk(id=cid, text=item["text"], title=item.get("title"), metadata=_chunk_metadata(item, chunk_scores),
                          **retriever)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: field '{field}': {exc}") from None
        chunks.append(chunk)
    return tuple(chunks)


def _chunk_metadata(item: Mapping[str, Any], chunk_scores: bool) -> dict[str, Any]:
    """A chunk's ``metadata``: every key but the schema's (and the retriever's, when read), as given, never checked.

    The schema says extra fields are allowed and ignored: they are kept for the caller (a stage reads
    a metadata key only when configured to, e.g. ``dedupe-overlaps``' ``doc_id``/``start``), never
    read as a score or a vector. A ``metadata`` object is merged in (the other keys first); any other
    ``metadata`` value is kept under ``"metadata"``. ``gold`` is the chunk's own field only (null: not
    gold), so a ``gold`` inside ``metadata`` never marks evidence. A lone UTF-16 surrogate in a kept
    value (which no JSON writer can write back) becomes U+FFFD.

    >>> _chunk_metadata({"id": "a", "text": "x", "score": "high", "metadata": "crawler-7"}, False)
    {'score': 'high', 'metadata': 'crawler-7'}
    >>> _chunk_metadata({"id": "a", "text": "x", "gold": None, "metadata": {"gold": True, "src": "wiki"}}, False)
    {'gold': False, 'src': 'wiki'}
    """
    skip = (*_CHUNK_FIELDS, *RETRIEVER_FIELDS) if chunk_scores else _CHUNK_FIELDS
    extra = {key: _repaired(value) for key, value in item.items() if key not in skip}
    given = extra.get("metadata")
    if isinstance(given, Mapping):
        del extra["metadata"]
        for key, value in given.items():
            extra.setdefault(key, value)
    if "gold" in item or "gold" in extra:
        extra["gold"] = item.get("gold") is True
    return extra


def _repaired(value: Any) -> Any:
    """``value`` with every lone UTF-16 surrogate in its strings (keys too, at any depth) replaced by U+FFFD.

    >>> _repaired({"a\\ud83d": ["x\\ud83d", 1]})
    {'a\ufffd': ['x\ufffd', 1]}
    """
    if isinstance(value, str):
        if value.isascii() or lone_surrogate(value) is None:
            return value
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, Mapping):
        return {_repaired(k): _repaired(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_repaired(v) for v in value]
    return value


def _retriever_fields(item: Mapping[str, Any], where: str, k: int, cid: str, dims: dict[int, int]) -> dict[str, Any]:
    """With ``chunk_scores``: the chunk's ``score`` and ``embedding`` as the retriever's, checked (errors name the fix)."""
    out: dict[str, Any] = {}
    field = f"chunks[{k}]"
    score = item.get("score")
    if score is not None:
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
            raise ValueError(
                f"{where}: field '{field}.score' (chunk {cid!r}): expected null or a finite number (the retriever's score), "
                f"got {_describe(score)}; --chunk-scores (chunk_scores=True) reads it as the retriever's score: fix it, "
                "or run without --chunk-scores to leave it unread"
            )
        out["score"] = score
    if item.get("embedding") is not None:
        dims.setdefault(_check_embedding(item["embedding"], f"{where}: field '{field}.embedding' (chunk {cid!r})"), k)
        if len(dims) > 1:
            (a, first), (b, _) = list(dims.items())[:2]
            raise ValueError(
                f"{where}: field '{field}.embedding' (chunk {cid!r}): {b} numbers, but chunks[{first}].embedding has "
                f"{a}; every chunk's vector must come from one model (the same length), or leave 'embedding' out"
            )
        out["embedding"] = item["embedding"]
    return out


def _check_embedding(value: Any, where: str) -> int:
    """A chunk's ``embedding``: a non-empty list of finite numbers; returns its length, else raises naming the fix.

    >>> _check_embedding([0.1, 0.2], "f.jsonl, line 1: field 'chunks[0].embedding'")
    2
    >>> _check_embedding("0.1,0.2", "f.jsonl, line 1: field 'chunks[0].embedding'")
    Traceback (most recent call last):
    ...
    ValueError: f.jsonl, line 1: field 'chunks[0].embedding': expected null or a list of numbers (the retriever's vector), got str '0.1,0.2'; write it as a JSON list, e.g. "embedding": [0.1, 0.2], or leave it out
    """
    fix = 'write it as a JSON list, e.g. "embedding": [0.1, 0.2], or leave it out'
    if not isinstance(value, list) or not value:
        raise ValueError(f"{where}: expected null or a list of numbers (the retriever's vector), got {_describe(value)}; {fix}")
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{where}: item {i} is {_describe(v)}, not a finite number; every item of the vector must be "
                             "a number (no NaN, Infinity or strings); fix the vector or leave 'embedding' out")
    return len(value)


def _check_text(where: str, field: str, text: str) -> None:
    """A lone UTF-16 surrogate (no UTF-8 form) raises here, naming the line and field, not mid-sweep.

    >>> _check_text("f.jsonl, line 3", "question", "Who \\ud800?")
    Traceback (most recent call last):
    ...
    ValueError: f.jsonl, line 3: field 'question': the value has a lone UTF-16 surrogate '\\ud800' at character 4 (half of a pair, e.g. an emoji split by a UTF-16 chunker), which no tokenizer can read; repair it first, e.g. value.encode('utf-16', 'surrogatepass').decode('utf-16', 'replace') (rejoins split pairs, turns a lone half into U+FFFD)
    """
    check_no_surrogate(text, f"{where}: field '{field}': the value", fix=SURROGATE_FIX.replace("text", "value", 1))


_NEAR_MISSES = {
    "question": ("query", "prompt"),
    "answers": ("answer", "gold_answers", "ground_truth", "ground_truths"),
    "chunks": ("contexts", "context", "passages", "documents", "docs", "ctxs"),
    "text": ("page_content", "content", "passage", "contents"),
}
"""Keys other tools use for a schema field (LangChain's ``page_content``, DPR's ``ctxs``, ...): named in the error."""


def _did_you_mean(obj: Mapping[str, Any], field: str) -> str:
    """When ``field`` is missing and ``obj`` has a key other tools use for it, the fix naming that key, else ``""``.

    >>> print(_did_you_mean({"answer": "Paris"}, "answers"))
    did you mean 'answers'? The object has 'answer': write "answers": ["Paris"]
    >>> _did_you_mean({"page_content": "Paris is big."}, "text")
    "did you mean 'text'? The object has 'page_content': rename it to 'text'"
    >>> _did_you_mean({"answers": []}, "answers")
    ''
    """
    if field in obj:
        return ""
    near = [k for k in obj if isinstance(k, str) and (k in _NEAR_MISSES.get(field, ()) or k.lower() == field)]
    if not near:
        return ""
    key = near[0]
    value = obj[key]
    if field == "answers" and isinstance(value, str):
        return f"did you mean 'answers'? The object has {key!r}: write \"answers\": [{json.dumps(value, ensure_ascii=False)}]"
    if field == "answers" and isinstance(value, list):
        return f"did you mean 'answers'? The object has {key!r}: rename it to 'answers' (a list of strings)"
    return f"did you mean {field!r}? The object has {key!r}: rename it to {field!r}"


def _chunk_shape(item: Any, suggested_id: str) -> str:
    """The fix for a chunk that is not an object: the object to write instead (its text in it, when it is a string).

    >>> _chunk_shape("Paris is in France.", "q1-0")
    'write each chunk as an object, e.g. {"id": "q1-0", "text": "Paris is in France."} (with "title" and "gold" if you have them)'
    """
    text = item if isinstance(item, str) else "the passage text"
    shape = json.dumps({"id": suggested_id, "text": text[:60] + ("..." if len(text) > 60 else "")}, ensure_ascii=False)
    return f'write each chunk as an object, e.g. {shape} (with "title" and "gold" if you have them)'


def _error(where: str, field: str, expected: str, got: str, fix: str = "") -> ValueError:
    """One message shape for every schema error: where, which field, what was expected and received, the fix."""
    return ValueError(f"{where}: field '{field}': expected {expected}, got {got}" + (f"; {fix}" if fix else ""))


def _show(obj: Mapping[str, Any], key: str) -> str:
    return _describe(obj[key]) if key in obj else "nothing (missing)"


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {_short(value)}" if value is not None else "null"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
