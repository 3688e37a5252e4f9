"""copydesk.store: the call store that makes a re-run pay nothing twice."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from copydesk.client import ApiEndpoint, ChatClient, ChatRequest, Completion, Usage
from copydesk.store import CallStore, call_key

MESSAGES = ({"role": "system", "content": "You write."}, {"role": "user", "content": "关于异步的标题"})
REQUEST = ChatRequest(model="gpt-4o-mini", messages=MESSAGES, params={"max_tokens": 20, "temperature": 0.9})


def completion(text: str = "异步 Python", usage: Usage | None = Usage(10, 5, 15)) -> Completion:
    return Completion(text=text, finish_reason="stop", usage=usage, model="gpt-4o-mini")


# ----------------------------------------------------------------------------- round trip


def test_put_get_round_trip_through_the_file(tmp_path: Path) -> None:
    path = tmp_path / "run" / "calls.jsonl"
    store = CallStore(path)
    store.put("k1", completion())
    store.put("k2", completion("no usage", usage=None))
    assert store.get("k1") == completion()
    store.close()

    reloaded = CallStore(path)
    assert len(reloaded) == 2
    assert reloaded.get("k1") == completion()
    assert reloaded.get("k2") == completion("no usage", usage=None)
    assert reloaded.get("missing") is None
    reloaded.close()


def test_each_put_is_on_disk_before_close(tmp_path: Path) -> None:
    """A process killed right after a call loses nothing: the line is flushed at once."""
    path = tmp_path / "calls.jsonl"
    store = CallStore(path)
    store.put("k1", completion())
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["key"] == "k1"
    # Chinese is stored as text, not as \u escapes.
    assert "异步" in lines[0]
    store.close()


def test_memory_only_store(tmp_path: Path) -> None:
    store = CallStore(None)
    store.put("k", completion())
    assert store.get("k") == completion()
    assert list(tmp_path.iterdir()) == []


def test_later_put_of_the_same_key_wins_on_reload(tmp_path: Path) -> None:
    path = tmp_path / "calls.jsonl"
    store = CallStore(path)
    store.put("k", completion("old"))
    store.put("k", completion("new"))
    store.close()
    assert CallStore(path).get("k") == completion("new")


def test_truncated_last_line_is_skipped_and_the_rest_loaded(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "calls.jsonl"
    store = CallStore(path)
    for i in range(3):
        store.put(f"k{i}", completion(f"text {i}"))
    store.close()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 25])  # the third line cut short, as by SIGKILL

    with caplog.at_level(logging.WARNING, logger="copydesk.store"):
        reloaded = CallStore(path)
    assert len(reloaded) == 2
    assert reloaded.get("k0") == completion("text 0")
    assert reloaded.get("k1") == completion("text 1")
    assert reloaded.get("k2") is None
    assert any(":3:" in r.getMessage() for r in caplog.records)
    reloaded.close()


def test_truncated_multibyte_character_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "calls.jsonl"
    store = CallStore(path)
    store.put("k0", completion("first"))
    store.put("k1", completion("尾" * 20))
    store.close()
    data = path.read_bytes()
    cut = data.rindex("尾".encode()) + 1  # in the middle of a 3-byte character
    path.write_bytes(data[:cut])
    reloaded = CallStore(path)
    assert reloaded.get("k0") == completion("first") and reloaded.get("k1") is None
    reloaded.close()


def test_records_written_after_a_truncated_line_survive_the_next_reload(tmp_path: Path) -> None:
    path = tmp_path / "calls.jsonl"
    store = CallStore(path)
    store.put("k0", completion("first"))
    store.put("k1", completion("second"))
    store.close()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 10])

    resumed = CallStore(path)
    resumed.put("k2", completion("after the crash"))
    resumed.close()

    again = CallStore(path)
    assert again.get("k0") == completion("first")
    assert again.get("k2") == completion("after the crash")
    again.close()


def test_answers_stay_on_disk_and_only_an_index_in_memory(tmp_path: Path) -> None:
    """Issue 25: a 10,000-topic run passed 1 GB because the store kept every answer in memory.
    Writing 8 MB of answers, and indexing them again on resume, keeps a small index only."""
    import tracemalloc

    path = tmp_path / "calls.jsonl"
    answers = {f"key-{i:04d}": f"answer {i} " + "x" * 8_000 for i in range(1_000)}
    tracemalloc.start()
    try:
        store = CallStore(path)
        before = tracemalloc.get_traced_memory()[0]
        for key, text in answers.items():
            store.put(key, completion(text))
        written = tracemalloc.get_traced_memory()[0] - before
        store.close()
        before = tracemalloc.get_traced_memory()[0]
        resumed = CallStore(path)
        indexed = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert path.stat().st_size > 8_000_000
    assert written < 500_000 and indexed < 500_000, (written, indexed)  # the answers: 8 MB
    assert len(resumed) == 1_000
    for key in ("key-0000", "key-0500", "key-0999"):
        assert resumed.get(key) == completion(answers[key])
    resumed.close()


def test_a_hit_is_read_back_while_the_store_appends(tmp_path: Path) -> None:
    """Records written by this process are answered from the file, between later appends."""
    store = CallStore(tmp_path / "calls.jsonl")
    for i in range(50):
        store.put(f"k{i}", completion(f"text {i} 尾"))
        assert store.get(f"k{i // 2}") == completion(f"text {i // 2} 尾")
    store.put_batch({"ref": "b1", "file_id": "f1"})
    store.put("after", completion("after a batch line"))
    assert store.get("after") == completion("after a batch line") and "after" in store
    store.close()
    assert store.get("k3") == completion("text 3 尾")  # closed: read from the path
    store.put("late", completion("late"))  # a call finishing after the run closed its store
    assert store.get("late") == completion("late") and len(store) == 52


def test_a_record_changed_under_the_run_is_a_miss(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "calls.jsonl"
    store = CallStore(path)
    store.put("k", completion("first"))
    path.write_bytes(b"\x00" * path.stat().st_size)  # the same length, unreadable
    with caplog.at_level(logging.WARNING, logger="copydesk.store"):
        assert store.get("k") is None
    assert any("cannot be read back" in r.getMessage() for r in caplog.records)
    store.close()


# ----------------------------------------------------------------------------- keys


def test_call_key_is_stable_and_hex() -> None:
    key = call_key("topic#1", "title", 0, REQUEST)
    assert key == call_key("topic#1", "title", 0, REQUEST)
    assert len(key) == 64 and int(key, 16) >= 0


@pytest.mark.parametrize(
    ("article", "stage", "part", "chat_request"),
    [
        ("topic#2", "title", 0, REQUEST),
        ("topic#1", "outline", 0, REQUEST),
        ("topic#1", "title", 1, REQUEST),
        ("topic#1", "title", 0, REQUEST.with_model("gpt-4o")),
        ("topic#1", "title", 0, ChatRequest(REQUEST.model, REQUEST.messages, {"max_tokens": 20, "temperature": 0.8})),
        ("topic#1", "title", 0, ChatRequest(REQUEST.model, REQUEST.messages, {"max_tokens": 21, "temperature": 0.9})),
        (
            "topic#1",
            "title",
            0,
            ChatRequest(REQUEST.model, (MESSAGES[0], {"role": "user", "content": "关于异步的标题!"}), REQUEST.params),
        ),
        ("topic#1", "title", 0, ChatRequest(REQUEST.model, MESSAGES[1:], REQUEST.params)),
    ],
)
def test_call_key_differs_by_article_stage_part_and_request(
    article: str, stage: str, part: int, chat_request: ChatRequest
) -> None:
    assert call_key(article, stage, part, chat_request) != call_key("topic#1", "title", 0, REQUEST)


def test_call_key_ignores_param_order() -> None:
    a = ChatRequest("m", MESSAGES, {"max_tokens": 20, "temperature": 0.9})
    b = ChatRequest("m", MESSAGES, {"temperature": 0.9, "max_tokens": 20})
    assert call_key("t", "title", 0, a) == call_key("t", "title", 0, b)


async def test_call_key_never_depends_on_the_api_key(tmp_path: Path) -> None:
    keys = ["sk-test-FIRST-key-aaaaaaaaaaaaaaaa", "sk-test-SECOND-key-bbbbbbbbbbbbbbbb"]
    bodies: list[bytes] = []
    auth: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(request.content)
        auth.append(request.headers["authorization"])
        return httpx.Response(
            200,
            json={
                "choices": [{"message": {"content": "Async Python"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
            },
        )

    path = tmp_path / "calls.jsonl"
    store = CallStore(path)
    stored_keys = []
    for api_key in keys:
        async with ChatClient(
            ApiEndpoint("https://api.example.test/v1", SecretStr(api_key)), transport=httpx.MockTransport(handler)
        ) as client:
            result = await client.complete(REQUEST)
        key = call_key("topic#1", "title", 0, REQUEST)
        stored_keys.append(key)
        store.put(key, result)
    store.close()

    # The two clients really used different keys, sent the same request, and got the same call key.
    assert auth == [f"Bearer {k}" for k in keys]
    assert bodies[0] == bodies[1]
    assert stored_keys[0] == stored_keys[1]
    text = path.read_text(encoding="utf-8")
    for api_key in keys:
        assert api_key not in text
        assert api_key.split("-")[2] not in text  # not even a fragment
    assert CallStore(path).get(stored_keys[0]) is not None


def test_the_call_store_and_the_reservation_journal_are_private(tmp_path: Path) -> None:
    """Issue #20, finding 12: under umask 022 a run folder's exports are readable by others, but
    the call store (every prompt and answer) and the reservation journal are 0600; one an older
    copydesk left 0644 is tightened when the run opens it again."""
    import os
    import stat

    from copydesk.allowance import ReservationJournal

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    old = os.umask(0o022)
    try:
        store = CallStore(tmp_path / "run" / "calls.jsonl")
        store.put("k", Completion(text="secret prompt's answer", finish_reason="stop", usage=None, model="m"))
        store.close()
        journal = ReservationJournal(tmp_path / "run" / "reservations.jsonl")
        journal.write({"id": "r1", "key": "k", "tokens": 5, "state": "open"})
        journal.close()
        (tmp_path / "run" / "articles.csv").write_text("exported\n")
        legacy = tmp_path / "old" / "calls.jsonl"
        legacy.parent.mkdir()
        legacy.write_text("")
        assert mode(legacy) == 0o644
        CallStore(legacy).close()
    finally:
        os.umask(old)
    assert mode(tmp_path / "run" / "calls.jsonl") == 0o600
    assert mode(tmp_path / "run" / "reservations.jsonl") == 0o600
    assert mode(tmp_path / "run" / "articles.csv") == 0o644 and mode(tmp_path / "run") == 0o755  # the umask's
    assert mode(legacy) == 0o600
    assert CallStore(tmp_path / "run" / "calls.jsonl").get("k").text == "secret prompt's answer"
