"""The chat endpoint keeps faith with what the client asked and can tell what it got.

* ``query`` (top level, in ``ragtrim`` or ``extra_body``) is the question the documents are optimized for, in place
  of the last user message (a follow-up turn such as "and his wife?" names nobody); a bad one is a 400 naming it.
* The answer maps the numbers the model cites ([1], [2], ...) to the client's document ids: ``ragtrim.documents`` in
  a non-streamed body, the ``X-Ragtrim-Documents`` header on a stream.
* A key the ``ragtrim`` / ``extra_body`` object does not know (``chunks``, ``docs``, ...) is a 400 listing the known
  ones, not the documents silently dropped; ``score_direction`` is read there as ``POST /v1/optimize`` reads it.
* A document's ``title``, ``score`` or ``metadata`` of the wrong type, and a duplicate id, are a 400 naming
  ``documents[i].field`` (not a 500 the OpenAI SDKs send three times).
* The documents' system message goes after leading ``system`` and ``developer`` messages.
* An assistant message's ``refusal`` content part is text.
"""

from __future__ import annotations

from urllib.parse import unquote

import pytest

from ragtrim.serve.fake_upstream import create_fake_upstream
from ragtrim.serve.testing import serve_in_thread

from serve_fixtures import DOCS, auth, budget, final_rows, gateway, ledger_rows, tenant_with_key

FOLLOW_UP_DOCS = [
    {"id": "darwin", "text": "Charles Darwin married his cousin Emma Wedgwood in 1839. His wife Emma bore him ten children; "
     "his wife outlived him by fourteen years. Darwin's wife was a devout Christian."},
    {"id": "einstein", "text": "Albert Einstein developed the theory of relativity. In 1903 Einstein married Mileva Maric, "
     "a physicist he met at the Zurich Polytechnic."},
    {"id": "newton", "text": "Isaac Newton formulated the laws of motion and universal gravitation. He never married."},
]
FOLLOW_UP = [{"role": "user", "content": "Who developed the theory of relativity?"},
             {"role": "assistant", "content": "Albert Einstein."},
             {"role": "user", "content": "and his wife?"}]
STANDALONE = "Who was Albert Einstein's wife?"


@pytest.fixture(scope="module")
def fake():
    app = create_fake_upstream(latency_ms=0, answer_tokens=5)
    with serve_in_thread(app) as url:
        yield url, app.state.fake


@pytest.fixture
def gw(fake):
    """(client, service, key, the fake's state) on a fresh gateway whose tenant has a large token budget."""
    url, state = fake
    with gateway(url) as (client, service):
        key = tenant_with_key(service, "acme")
        budget(service, "acme", "tokens", 10_000_000)
        yield client, service, key, state


def post(client, key, body, **kw):
    return client.post("/v1/chat/completions", json={"model": "gpt-4o", "max_tokens": 5, **body}, headers=auth(key), **kw)


def context_sent(state):
    """The documents' text in the last body the upstream got (its system message after the template's header)."""
    [doc] = [m for m in state.bodies[-1]["messages"] if m["role"] == "system" and "Documents:\n" in m["content"]]
    return doc["content"].split("Documents:\n", 1)[1]


def error_of(r, status=400):
    assert r.status_code == status, r.text
    return r.json()["error"]


# -- 1. query: the question the documents are optimized for ----------------------------------------------------------


@pytest.mark.parametrize("where", ["top", "ragtrim", "extra_body"])
def test_query_is_the_question_the_documents_are_optimized_for(gw, where):
    client, service, key, state = gw
    plain = post(client, key, {"messages": FOLLOW_UP, "documents": FOLLOW_UP_DOCS, "budget": 0.45})
    assert plain.status_code == 200, plain.text
    assert "Darwin" in context_sent(state) and "Einstein" not in context_sent(state)  # "and his wife?" alone
    fields = {"documents": FOLLOW_UP_DOCS, "budget": 0.45, "query": STANDALONE}
    body = {"messages": FOLLOW_UP, **(fields if where == "top" else {where: fields})}
    r = post(client, key, body)
    assert r.status_code == 200, r.text
    assert "Einstein married Mileva" in context_sent(state) and "Darwin" not in context_sent(state)
    sent = state.bodies[-1]
    assert "query" not in sent and sent["messages"][-1] == FOLLOW_UP[-1]  # ours, never forwarded; the chat as it came


@pytest.mark.parametrize("value, says", [(5, "must be a non-empty string"), ("", "must be a non-empty string"),
                                         ("   ", "must be a non-empty string"), ("who\x00is", "control character")])
def test_a_bad_query_is_a_400_naming_it(gw, value, says):
    client, service, key, state = gw
    calls = state.calls
    err = error_of(post(client, key, {"messages": FOLLOW_UP, "ragtrim": {"documents": FOLLOW_UP_DOCS, "query": value}}))
    assert err["param"] == "query" and err["message"].startswith("query ") and says in err["message"], err
    assert state.calls == calls
    assert [(row["action"], row["status"]) for row in ledger_rows(service)] == [("failed", 400)]


def test_a_query_over_several_lines_is_taken(gw):
    client, service, key, state = gw
    r = post(client, key, {"messages": FOLLOW_UP, "documents": FOLLOW_UP_DOCS, "budget": 0.45,
                           "query": "Albert Einstein:\n\twho was his wife?"})
    assert r.status_code == 200, r.text
    assert "Einstein married Mileva" in context_sent(state)


# -- 2. citations: which of the client's documents [n] is ------------------------------------------------------------


def _check_markers(context, pairs, titles):
    """Each ``[n]`` of ``context`` opens the block of the document ``pairs`` maps it to (its title printed after it)."""
    for n, doc_id in pairs:
        assert f"[{n}] {titles[doc_id]}\n" in context, (n, doc_id, context)
    assert f"[{len(pairs) + 1}]" not in context


def test_the_body_maps_each_cited_number_to_the_clients_document_id(gw):
    client, service, key, state = gw
    r = post(client, key, {"messages": [{"role": "user", "content": "Which French city is a port on the Mediterranean?"}],
                           "documents": DOCS, "budget": 0.6})
    assert r.status_code == 200, r.text
    listed = r.json()["ragtrim"]["documents"]
    assert [d["n"] for d in listed] == list(range(1, len(listed) + 1)) and 0 < len(listed) < len(DOCS)
    pairs = [(d["n"], d["id"]) for d in listed]
    assert pairs[0] == (1, "d3")  # reranked: the client's third document is [1]
    _check_markers(context_sent(state), pairs, {d["id"]: d["title"] for d in DOCS})
    assert "x-ragtrim-documents" not in r.headers  # a body carries it: no long header where it is not needed


def test_documents_given_as_strings_are_listed_by_their_index(gw):
    client, service, key, state = gw
    texts = ["Bordeaux is famous for its wine.", "Paris is the capital of France.", "Lyon is known for its cuisine."]
    r = post(client, key, {"messages": [{"role": "user", "content": "What is the capital of France?"}], "documents": texts})
    assert r.status_code == 200, r.text
    listed = r.json()["ragtrim"]["documents"]
    assert sorted(d["id"] for d in listed) == ["0", "1", "2"] and listed[0] == {"n": 1, "id": "1"}
    assert context_sent(state).startswith("[1] Paris is the capital")


def test_without_documents_the_list_is_empty(gw):
    client, service, key, state = gw
    r = post(client, key, {"messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200 and r.json()["ragtrim"]["documents"] == []


def test_a_stream_maps_them_in_a_header_with_ids_escaped(gw):
    client, service, key, state = gw
    docs = [dict(d, id=f"doc {d['id']},v=1/é") for d in DOCS]  # a space, a comma, an equals sign, a slash, non-ASCII
    with client.stream("POST", "/v1/chat/completions", headers=auth(key), json={
            "model": "gpt-4o", "max_tokens": 5, "stream": True, "documents": docs, "budget": 0.6,
            "messages": [{"role": "user", "content": "Which French city is a port on the Mediterranean?"}]}) as r:
        assert r.status_code == 200
        value = r.headers["x-ragtrim-documents"]
        b"".join(r.iter_bytes())
    assert value.isascii() and " " not in value
    pairs = [(int(n), unquote(i)) for n, i in (item.split("=", 1) for item in value.split(","))]
    assert [n for n, _ in pairs] == list(range(1, len(pairs) + 1)) and pairs[0] == (1, "doc d3,v=1/é")
    _check_markers(context_sent(state), pairs, {d["id"]: d["title"] for d in docs})
    final_rows(service)


def test_a_streams_header_stops_at_4_kb_and_says_how_many_it_lists(gw):
    """200 documents with URL ids (18 KB escaped) would break Node's fetch (16 KB of headers): the header lists what fits."""
    client, service, key, state = gw
    docs = [{"id": f"https://docs.example.com/handbook/chapter-{n}/section-{n}.html#paragraph-{n}",
             "text": f"Section {n} of the handbook says rule {n} applies to team {n}."} for n in range(200)]
    with client.stream("POST", "/v1/chat/completions", headers=auth(key), json={
            "model": "gpt-4o", "max_tokens": 5, "stream": True, "documents": docs, "budget": 1.0,
            "messages": [{"role": "user", "content": "Which rule applies to team 7?"}]}) as r:
        assert r.status_code == 200
        value, listed = r.headers["x-ragtrim-documents"], r.headers["x-ragtrim-documents-listed"]
        b"".join(r.iter_bytes())
    shown, total = map(int, listed.split("/"))
    assert len(value) <= 4096 and shown == len(value.split(",")) and shown < total == 200
    assert [int(p.split("=", 1)[0]) for p in value.split(",")] == list(range(1, shown + 1))
    final_rows(service)


# -- 3. unknown keys in ragtrim's own objects; score_direction -------------------------------------------------------


@pytest.mark.parametrize("holder, name", [("ragtrim", "chunks"), ("ragtrim", "docs"), ("extra_body", "document"),
                                          ("extra_body", "temperature")])
def test_an_unknown_key_in_ragtrims_objects_is_a_400_listing_the_known_ones(gw, holder, name):
    client, service, key, state = gw
    calls = state.calls
    err = error_of(post(client, key, {"messages": [{"role": "user", "content": "What is the capital of France?"}],
                                      holder: {name: DOCS}}))
    assert err["param"] == holder and f"{holder} has unknown field {name!r}" in err["message"], err
    for known in ("documents", "budget", "preset", "feature", "query", "score_direction"):
        assert known in err["message"]
    assert state.calls == calls


QUERY = "Who is Acme's CEO?"
SIMILARITIES = [{"id": "c0", "text": "Acme Corp was founded in 1990 in Ohio. It makes tools.", "score": 0.21},
                {"id": "c1", "text": "The company has offices in three countries. Its staff is 400.", "score": 0.34},
                {"id": "c2", "text": "Acme's products include hammers and wrenches. They sell online.", "score": 0.47},
                {"id": "c3", "text": "Acme's CEO since 2019 is Maria Lopez. She previously led Bolt Inc.", "score": 0.88}]


@pytest.mark.parametrize("where", ["top", "ragtrim"])
def test_score_direction_is_read_as_optimize_reads_it(gw, where):
    client, service, key, state = gw
    # "full" packs by the scores alone: similarities rising along the order sent are read as distances by "auto"
    base = {"documents": SIMILARITIES, "budget": 20, "preset": "full"}
    msgs = [{"role": "user", "content": QUERY}]
    assert post(client, key, {"messages": msgs, **base}).status_code == 200
    assert "Maria Lopez" not in context_sent(state)
    fields = {**base, "score_direction": "similarity"}
    r = post(client, key, {"messages": msgs, **(fields if where == "top" else {where: fields})})
    assert r.status_code == 200, r.text
    assert "Maria Lopez" in context_sent(state) and "score_direction" not in state.bodies[-1]
    err = error_of(post(client, key, {"messages": msgs, **base, "score_direction": "cosine"}))
    assert err["param"] == "score_direction" and "'auto', 'similarity', 'distance'" in err["message"]


# -- 4. a document field of the wrong type is the client's 400 -------------------------------------------------------


@pytest.mark.parametrize("bad, field", [({"title": 1889}, "title"), ({"score": "high"}, "score"), ({"score": True}, "score"),
                                        ({"metadata": "wiki"}, "metadata"), ({"metadata": [1]}, "metadata")])
def test_a_bad_document_field_is_a_400_naming_it(gw, bad, field):
    client, service, key, state = gw
    docs = [DOCS[0], dict(DOCS[1], **bad)]
    err = error_of(post(client, key, {"messages": [{"role": "user", "content": "q"}], "documents": docs}))
    assert err["type"] == "invalid_request_error" and err["param"] == "documents", err
    assert err["message"].startswith(f"documents[1].{field} must be "), err
    assert [(row["action"], row["status"]) for row in ledger_rows(service)] == [("failed", 400)]


def test_fields_of_the_right_type_are_taken(gw):
    client, service, key, state = gw
    docs = [dict(DOCS[0], score=0.5, metadata={"source": "wiki"}), dict(DOCS[1], title=None, score=None, metadata=None),
            dict(DOCS[2], score=3)]
    r = post(client, key, {"messages": [{"role": "user", "content": "What is the capital of France?"}], "documents": docs})
    assert r.status_code == 200, r.text


def test_optimize_names_the_chunk_field_too(gw):
    client, service, key, state = gw
    r = client.post("/v1/optimize", json={"query": "q", "chunks": [{"id": "a", "text": "x", "title": 5}]}, headers=auth(key))
    err = error_of(r)
    assert err["param"] == "chunks" and err["message"].startswith("chunks[0].title must be a string or null, got 5"), err


def test_duplicate_ids_are_a_400_naming_both_documents(gw):
    client, service, key, state = gw
    err = error_of(post(client, key, {"messages": [{"role": "user", "content": "q"}],
                                      "documents": [{"id": 1, "text": "a"}, {"id": "x", "text": "b"}, {"id": "1", "text": "c"}]}))
    assert err["param"] == "documents" and err["message"].startswith("documents[0] and documents[2] have the same id '1'"), err
    # a document given as a string has its index as id, which may be another's
    err = error_of(post(client, key, {"messages": [{"role": "user", "content": "q"}],
                                      "documents": [{"id": "1", "text": "a"}, "b"]}))
    assert err["message"].startswith("documents[0] and documents[1] have the same id '1'"), err
    assert "a document given as a string has its index as id" in err["message"], err


# -- 5, 6. developer messages; an assistant's refusal part -----------------------------------------------------------


def test_the_documents_go_after_leading_developer_and_system_messages(gw):
    client, service, key, state = gw
    msgs = [{"role": "developer", "content": "Always answer in French."}, {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is the capital of France?"}, {"role": "developer", "content": "later"}]
    assert post(client, key, {"messages": msgs, "documents": DOCS}).status_code == 200
    roles = [m["role"] for m in state.bodies[-1]["messages"]]
    assert roles == ["developer", "system", "system", "user", "developer"]
    assert state.bodies[-1]["messages"][2]["content"].startswith("Answer the user's question using the documents")


def test_an_assistant_refusal_part_is_text(gw):
    client, service, key, state = gw
    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": [{"type": "refusal", "refusal": "I can't."}]},
            {"role": "user", "content": "What is the capital of France?"}]
    r = post(client, key, {"messages": msgs, "documents": DOCS})
    assert r.status_code == 200, r.text
    assert state.bodies[-1]["messages"][-2] == msgs[1]
    err = error_of(post(client, key, {"messages": [{"role": "user", "content": [{"type": "refusal", "refusal": "x"}]}]}))
    assert "only text content parts are supported" in err["message"]  # a user's message has no refusal part


def test_the_openapi_schema_lists_ragtrims_fields_and_its_objects(gw):
    from ragtrim.serve.bodies import RAGTRIM_FIELDS

    client, service, key, state = gw
    schema = client.get("/openapi.json").json()["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]
    for name in ("ragtrim", "extra_body"):
        assert tuple(schema["properties"][name]["properties"]) == RAGTRIM_FIELDS
        assert schema["properties"][name]["additionalProperties"] is False
    assert set(RAGTRIM_FIELDS) <= set(schema["properties"])


@pytest.mark.parametrize("bad", [None, 1.5, True, "", ["a"]])
def test_a_document_id_that_is_no_string_or_integer_is_a_400(gw, bad):
    """A null or 1.5 id was read back as "None" or "1.5" in the citations; an integer id is fine (read as its digits)."""
    client, service, key, state = gw
    r = post(client, key, {"documents": [{"id": bad, "text": "Paris is the capital."}],
                            "messages": [{"role": "user", "content": "capital?"}]})
    assert error_of(r)["param"] == "documents" and "documents[0].id" in error_of(r)["message"]
    ok = post(client, key, {"documents": [{"id": 7, "text": "Paris is the capital."}], "messages": [{"role": "user", "content": "capital?"}]})
    assert ok.status_code == 200 and ok.json()["ragtrim"]["documents"] == [{"n": 1, "id": "7"}]
