"""max_cost_usd on every path: a request's reservation is settled, released or kept however it ends
(answered, refused, timed out, cancelled, or never sent because the pace state was lost); a
run and its resumes share one budget; every response-format probe attempt is reserved; and when
the provider bills more than the worst case (it ignores max_tokens), nothing more is sent once the
spend has reached the budget."""

import asyncio
import contextlib
import socket
import time

import pytest
import yaml

from batch_pipeline.analysis.registry import catalogue
from batch_pipeline.cli.recovery import resume
from batch_pipeline.context import ProcessingContext
from batch_pipeline.costs.prices import ModelPrice
from batch_pipeline.costs.spend import SpendLimit
from batch_pipeline.defs.tags import BUDGET_RUN_TAG
from batch_pipeline.llm.completions import completion_request, sent_body
from batch_pipeline.llm.options import LlmSettings
from batch_pipeline.llm.prompts import build_messages
from batch_pipeline.llm.provider import LlmProvider
from batch_pipeline.llm.response_format import ResponseFormatMode
from batch_pipeline.llm.tokens import estimate_request_tokens
from batch_pipeline.store.run_budgets import spend_of
from batch_pipeline_tests.conftest import llm_endpoint, llm_run, rows_of, write_corpus
from testbed.fake_openai_server import Behaviour, ChatCall, FakeOpenAIServer

# USD per million tokens: dear enough that a few documents cost cents.
PRICES = {"gpt-test": {"input": 100.0, "output": 400.0}}
PRICE = ModelPrice(**PRICES["gpt-test"])
CONTEXT = ProcessingContext(model_key="content_compliance", ai_model="gpt-test").pinned(catalogue())


@pytest.fixture
def priced(tmp_path, monkeypatch):
    path = tmp_path / "prices.yaml"
    path.write_text(yaml.safe_dump(PRICES))
    monkeypatch.setenv("BATCH_PIPELINE_PRICES", str(path))


def cost_of(rows) -> float:
    return float(rows["input_tokens"].sum() * PRICE.input + rows["output_tokens"].sum() * PRICE.output) / 1e6


def document_requests(server: FakeOpenAIServer) -> list:
    return [r for r in server.requests if r.document]


def settings_for(base_url: str, rate_limit_url: str | None = None, **overrides) -> LlmSettings:
    values = dict(
        api_key="sk-test-key", base_url=base_url, rate_limit_url=rate_limit_url, timeout_seconds=30,
        max_concurrent_requests=40, requests_per_minute=None, tokens_per_minute=None, max_attempts=3,
        rate_limit_wait_seconds=120, retry_max_wait_seconds=0.1, max_output_tokens=40, max_repairs=0,
        response_format=ResponseFormatMode.json_schema, batch_poll_max_seconds=1, batch_resubmissions=2,
    )  # fmt: skip
    return LlmSettings(**{**values, **overrides})


def note(i: int) -> str:
    return f"# Note {i:03d}\n\nWrite to n{i:03d}@example.com about order {i:03d}.\n"


async def analyse_all(settings: LlmSettings, spend: SpendLimit, count: int) -> list[str]:
    analyser = LlmProvider(settings).analyser(ResponseFormatMode.json_schema, "gpt-test", lambda message: None, spend)
    slots = asyncio.Semaphore(settings.max_concurrent_requests)

    async def one(i: int) -> str:
        async with slots:
            return (await analyser.analyse(note(i), CONTEXT)).status

    try:
        return await asyncio.gather(*(one(i) for i in range(count)))
    finally:
        await analyser.close()


def worst_case_of_a_note(spend: SpendLimit, settings: LlmSettings) -> float:
    analyser = LlmProvider(settings).analyser(ResponseFormatMode.json_schema, "gpt-test", lambda message: None)
    return spend.worst_case(estimate_request_tokens(analyser.request_body(note(0), CONTEXT)))


def test_reservations_of_documents_a_lost_pace_state_kept_back_are_given_back(store):
    """Guarantee: when the rate limiter cannot be asked (its store is gone), the documents' reservations
    are released, nothing is sent, and the budget reads spent 0, reserved 0: no later document
    ends `budget_exceeded` for money that was never spent."""
    spend = SpendLimit(store, "run-lost-store", 1.0, PRICE, max_output_tokens=40)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]  # closed again: nothing listens there
    with FakeOpenAIServer() as server:
        settings = settings_for(server.url, rate_limit_url=f"redis://127.0.0.1:{dead_port}/0")
        assert 1.0 / worst_case_of_a_note(spend, settings) < 40, "the budget must not fit every document at once"
        statuses = asyncio.run(analyse_all(settings, spend, 40))
        assert server.requests == []
    assert statuses == ["pace_state_unavailable"] * 40
    assert spend_of(store, "run-lost-store") == (1.0, 0.0, 0.0)


def test_reservations_of_cancelled_requests_are_released_if_unsent_and_kept_if_in_flight(store):
    """Guarantee: a cancelled analysis (a stopped run) leaves nothing reserved: requests still waiting
    for their rate-limit slot give their reservation back; the one already sent, unanswered, counts
    at its worst case (it may be billed)."""
    spend = SpendLimit(store, "run-cancelled", 100.0, PRICE, max_output_tokens=40)

    async def cancelled_once_the_first_is_sent(settings: LlmSettings, server: FakeOpenAIServer) -> None:
        task = asyncio.ensure_future(analyse_all(settings, spend, 6))
        deadline = time.monotonic() + 30
        while not document_requests(server):  # not a fixed delay: on a busy machine the first is late
            assert time.monotonic() < deadline and not task.done(), "the first request was never sent"
            await asyncio.sleep(0.01)
        task.cancel()  # well within the second the next one waits for its slot
        with contextlib.suppress(asyncio.CancelledError):
            await task

    # 60 requests a minute: one goes out at once, the others wait a second apart for their slots.
    with FakeOpenAIServer(Behaviour(hang_rate=1.0, hang_seconds=30)) as server:  # logged as they arrive
        settings = settings_for(server.url, requests_per_minute=60)
        asyncio.run(cancelled_once_the_first_is_sent(settings, server))
        sent = len(document_requests(server))
    _, spent, reserved = spend_of(store, "run-cancelled")
    assert sent == 1 and reserved == pytest.approx(0.0, abs=1e-12)
    assert spent == pytest.approx(worst_case_of_a_note(spend, settings), rel=0.05)


@pytest.mark.parametrize(
    "behaviour, settled_at",
    [
        (Behaviour(), "its real cost"),
        (Behaviour(error_rate=1.0), "nothing: every attempt was refused with a 500"),
        (Behaviour(hang_rate=1.0, hang_seconds=30), "its worst case, per attempt: no answer, it may be billed"),
    ],
    ids=["answered", "refused", "timed-out"],
)
def test_every_way_a_request_ends_settles_its_reservation(store, behaviour, settled_at):
    """Guarantee: answered, refused (5xx) or unanswered (timeout), after its retries a request leaves
    nothing reserved; the spend is its real cost, nothing, or its worst case for each attempt sent."""
    spend = SpendLimit(store, "run-paths", 100.0, PRICE, max_output_tokens=40)
    with FakeOpenAIServer(behaviour) as server:
        settings = settings_for(server.url, timeout_seconds=0.5, max_concurrent_requests=2)
        statuses = asyncio.run(analyse_all(settings, spend, 2))
        attempts = len(document_requests(server))
    _, spent, reserved = spend_of(store, "run-paths")
    assert reserved == pytest.approx(0.0, abs=1e-12), settled_at
    if settled_at.startswith("its real"):
        assert statuses == ["ok", "ok"] and 0 < spent < 2 * worst_case_of_a_note(spend, settings)
    elif settled_at.startswith("nothing"):
        assert statuses == ["provider_error"] * 2 and spent == 0.0
    else:
        assert statuses == ["provider_error"] * 2 and attempts == 2 * settings.max_attempts
        assert spent == pytest.approx(attempts * worst_case_of_a_note(spend, settings), rel=0.05)


def test_a_resumed_run_draws_on_the_budget_of_the_run_it_resumes(pipeline_home, instance, key, tmp_path, priced, store):
    """Guarantee: `batch-pipeline resume` (and a resume of that resume) spends from the first run's
    max_cost_usd, not from a fresh one: what the run and its resumes pay together stays within it."""
    corpus = write_corpus(tmp_path / "corpus", 14)
    # The launch's estimate ($1.19) fits; answers 600 tokens longer ($0.33 each) spend it on about 9
    # documents. The 5 left are estimated at $1.45 from those answers: each resume's launch fits too.
    budget = 3.0
    llm = {"response_format": "json_schema", "max_output_tokens": 1000, "max_concurrent_requests": 2}
    with FakeOpenAIServer(Behaviour(extra_completion_tokens=600)) as server, llm_endpoint(server.url):
        runs = [llm_run(instance, server, corpus, raise_on_error=False, llm_options=llm, max_cost_usd=budget,
                        on_document_failure="fail").run_id]  # fmt: skip
        for _ in range(2):  # a resume, then a resume of that resume
            assert rows_of(runs[-1])["status"].value_counts().get("budget_exceeded", 0) >= 3
            runs.append(resume(instance, store, runs[-1]).run_id)
            rows = rows_of(runs[-1])  # it analysed the batch (its launch was not refused)
            assert len(rows) == 14 and set(rows["status"]) <= {"ok", "budget_exceeded"}
            answered = [r[r["cached_from_run_id"].isna() & (r["status"] == "ok")] for r in map(rows_of, runs)]
            assert len(document_requests(server)) == sum(len(r) for r in answered)
            paid = sum(cost_of(r) for r in answered)
            assert paid <= budget, f"the run and its {len(runs) - 1} resume(s) paid ${paid:.2f} from a ${budget} budget"
    max_cost, spent, reserved = spend_of(store, runs[0])
    assert max_cost == budget and spent == pytest.approx(paid) and reserved == pytest.approx(0.0, abs=1e-12)
    assert spend_of(store, runs[1]) is None and spend_of(store, runs[2]) is None
    assert instance.get_run_by_id(runs[2]).tags[BUDGET_RUN_TAG] == runs[0]


def test_every_response_format_probe_attempt_is_reserved_before_it_is_sent(
    pipeline_home, instance, key, tmp_path, priced, store
):
    """Guarantee: the response-format probe's retries are each reserved at their worst case before
    they go out; an attempt that got no answer stays counted so, the answered one costs what it
    cost: the ledger holds exactly the attempts sent plus the documents' answers."""
    corpus = write_corpus(tmp_path / "corpus", 3)
    hung = 3
    llm = {"timeout_seconds": 1, "max_attempts": hung + 2, "retry_max_wait_seconds": 0.1, "max_output_tokens": 200}
    with FakeOpenAIServer(Behaviour(hang_first=hung, hang_seconds=30)) as server:
        result = llm_run(instance, server, corpus, llm_options=llm, max_cost_usd=50.0)
        probes = [r for r in server.requests if r.document is not None and not r.document.strip()]
    assert result.success and len(probes) == hung + 1
    assert [r.status for r in probes] == [0] * hung + [200]

    model = catalogue().get("content_compliance")
    messages = build_messages(model, "", "", ResponseFormatMode.json_schema)
    probe = sent_body(completion_request(model, "gpt-test", messages, ResponseFormatMode.json_schema, max_tokens=1))
    worst = (int(estimate_request_tokens(probe) * 1.25) + 64) * PRICE.input / 1e6 + PRICE.output / 1e6
    real = ChatCall.of(probe).prompt_tokens * PRICE.input / 1e6 + PRICE.output / 1e6  # as the server bills it
    _, spent, reserved = spend_of(store, result.run_id)
    assert reserved == pytest.approx(0.0, abs=1e-12)
    assert spent == pytest.approx(hung * worst + real + cost_of(rows_of(result.run_id)), rel=1e-6)


@pytest.mark.parametrize("honours_max_tokens", [True, False], ids=["honours-max-tokens", "ignores-max-tokens"])
def test_answers_longer_than_estimated_stay_within_the_budget_while_the_provider_honours_max_tokens(
    pipeline_home, instance, key, tmp_path, priced, store, honours_max_tokens
):
    """Guarantee: every answer 10,000 tokens longer than the estimate. While the provider stops at
    max_tokens the spend stays within max_cost_usd (the worst case reserved is what it can bill).
    When it does not, the spend passes the budget by what the requests in flight billed over their
    worst case, and nothing more is sent: here the first answer alone, so no second request."""
    corpus = write_corpus(tmp_path / "corpus", 20)
    budget = 2.0  # the launch's estimate ($1.69) fits
    behaviour = Behaviour(extra_completion_tokens=10_000, honours_max_tokens=honours_max_tokens)
    llm = {"response_format": "json_schema", "max_output_tokens": 200, "max_concurrent_requests": 4}
    with FakeOpenAIServer(behaviour) as server:
        result = llm_run(instance, server, corpus, llm_options=llm, max_cost_usd=budget)
        sent = len(document_requests(server))
    rows = rows_of(result.run_id)
    counts = rows["status"].value_counts().to_dict()
    _, spent, reserved = spend_of(store, result.run_id)
    assert reserved == pytest.approx(0.0, abs=1e-12) and spent == pytest.approx(cost_of(rows[rows["status"] == "ok"]))
    assert sent == counts["ok"] and counts["budget_exceeded"] == 20 - counts["ok"]
    if honours_max_tokens:
        assert (rows.loc[rows["status"] == "ok", "output_tokens"] == 200).all()
        assert counts["ok"] >= 3 and spent <= budget
    else:
        # The lone first request (no limit known yet) bills 10,000+ output tokens at $400/M: over $4. The
        # three other documents reserved nothing while they waited for it (no rate-limit slot yet).
        assert sent == 1 and spent > budget
