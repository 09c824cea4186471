"""Outputs are bounded and safe: a stored result keeps at most $BATCH_PIPELINE_MAX_FINDINGS items per
list and counts the rest, whatever analysed the document; the report says so; report.html has a
bounded size whatever the batch; results.csv cannot start a spreadsheet formula."""

import csv
import io
import json
import re

import pandas as pd
import pytest

from batch_pipeline.analysis.registry import catalogue
from batch_pipeline.analysis.stored_result import stored_json
from batch_pipeline.cli.main import main
from batch_pipeline.llm.response_format import ResponseFormatMode, response_format
from batch_pipeline.report.csv_cells import write_csv
from batch_pipeline.report.html import render_html
from batch_pipeline.report.report import BatchReport
from batch_pipeline_tests.conftest import batch_config, llm_run, rows_of, run_job
from testbed.fake_openai_server import FakeOpenAIServer

ADDRESSES = 5000
LIMIT = 1000


def addresses_document(count: int) -> str:
    lines = (" ".join(f"user{i + j}@example.com" for j in range(10)) for i in range(0, count, 10))
    return "# Mailing list\n\n" + "\n".join(lines) + "\n"


@pytest.fixture
def mailing_list(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "mailing_list.md").write_text(addresses_document(ADDRESSES))
    (folder / "memo.md").write_text("# Memo\n\nNothing personal in here, just a memo about the roadmap.\n")
    return folder


def has_row(markdown: str, label: str, value: int) -> bool:
    return re.search(rf"^\|\s*{label}\s*\|\s*{value}\s*\|$", markdown, re.M) is not None


def report_files(pipeline_home, run_id: str):
    folder = pipeline_home / "reports" / run_id
    return folder / "results.csv", folder / "summary.md", folder / "report.html"


def test_findings_over_the_limit_are_counted_not_kept_in_the_stored_result_and_everywhere_shown(
    pipeline_home, instance, mailing_list, monkeypatch, capsys
):
    """A document with 5,000 e-mail addresses, analysed offline with the limit at 1,000: its stored
    result holds 1,000 findings and says 4,000 more were found; results.csv, summary.md, report.html,
    the CLI's CSV and the asset metadata show the same, and results.csv and report.html stay small."""
    monkeypatch.setenv("BATCH_PIPELINE_MAX_FINDINGS", str(LIMIT))
    result = run_job(instance, batch_config(str(mailing_list)))
    assert result.success

    stored = json.loads(rows_of(result.run_id).loc["mailing_list.md", "result"])
    assert len(stored["findings"]) == LIMIT and stored["omitted"] == {"findings": ADDRESSES - LIMIT}
    assert stored["summary"].startswith(f"{ADDRESSES} finding(s)")  # what the analyser found, all of it
    assert stored["risk_level"] == "medium" and stored["compliant"] is False

    csv_path, summary_path, html_path = report_files(pipeline_home, result.run_id)
    csv_rows = pd.read_csv(csv_path).set_index("filename")  # pandas: the csv module refuses a cell over 128 KB
    assert json.loads(csv_rows.loc["mailing_list.md", "result"]) == stored
    summary = summary_path.read_text()
    assert has_row(summary, "email", LIMIT)  # findings per category: those stored
    assert "## Not kept" in summary and has_row(summary, "findings", ADDRESSES - LIMIT)
    page = html_path.read_text()
    assert f"{LIMIT - 10} more not shown, see results.csv" in page
    assert f"{ADDRESSES - LIMIT} more found but not kept" in page
    # Uncapped, the same run wrote a 0.75 MB results.csv and a 0.77 MB report.html.
    assert csv_path.stat().st_size < 200_000
    assert html_path.stat().st_size < 30_000

    (materialization,) = result.asset_materializations_for_node("aggregate")
    assert materialization.metadata["items_not_kept"].value == ADDRESSES - LIMIT
    assert "**Not kept**" in materialization.metadata["model_summary"].value

    capsys.readouterr()
    assert main(["results", result.run_id, "--format", "csv"]) == 0
    printed = pd.read_csv(io.StringIO(capsys.readouterr().out)).set_index("filename")
    assert json.loads(printed.loc["mailing_list.md", "result"])["omitted"] == {"findings": ADDRESSES - LIMIT}


def test_a_capped_result_is_reused_from_the_cache_as_stored_and_a_new_limit_analyses_again(
    pipeline_home, instance, mailing_list, monkeypatch
):
    """The result cache serves a capped result with its count of what was not kept, and the report
    reads it (parse_result takes a capped result); the limit is part of the offline cache key, so a
    run under another limit analyses the document again instead of serving a result cut to the old one."""
    monkeypatch.setenv("BATCH_PIPELINE_MAX_FINDINGS", str(LIMIT))
    first = run_job(instance, batch_config(str(mailing_list)))
    again = run_job(instance, batch_config(str(mailing_list)))
    first_row, again_row = rows_of(first.run_id).loc["mailing_list.md"], rows_of(again.run_id).loc["mailing_list.md"]
    assert again_row["cached_from_run_id"] == first.run_id
    assert again_row["result"] == first_row["result"]
    assert has_row(report_files(pipeline_home, again.run_id)[1].read_text(), "findings", ADDRESSES - LIMIT)

    monkeypatch.setenv("BATCH_PIPELINE_MAX_FINDINGS", "2000")
    raised = run_job(instance, batch_config(str(mailing_list)))
    raised_row = rows_of(raised.run_id).loc["mailing_list.md"]
    assert pd.isna(raised_row["cached_from_run_id"])
    stored = json.loads(raised_row["result"])
    assert len(stored["findings"]) == 2000 and stored["omitted"] == {"findings": ADDRESSES - 2000}


def test_an_llm_answer_is_capped_like_an_offline_result(pipeline_home, instance, key, tmp_path, monkeypatch):
    """An LLM's answer is untrusted too: one with 600 findings is stored with the limit's 100 and a
    count of 500 more; the schema the provider is asked to answer stays strict (every property
    required, no additional ones, no `omitted`)."""
    monkeypatch.setenv("BATCH_PIPELINE_MAX_FINDINGS", "100")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "mailing_list.md").write_text(addresses_document(600))
    with FakeOpenAIServer() as server:  # answers with the offline analyser's result: 600 findings
        result = llm_run(instance, server, corpus)
    assert result.success
    stored = json.loads(rows_of(result.run_id).loc["mailing_list.md", "result"])
    assert len(stored["findings"]) == 100 and stored["omitted"] == {"findings": 500}

    schema = response_format(catalogue().get("content_compliance"), ResponseFormatMode.json_schema)["json_schema"][
        "schema"
    ]
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == set(schema["properties"]) and "omitted" not in schema["properties"]


@pytest.mark.parametrize("key", list(catalogue().analyses))
def test_every_models_lists_are_capped_and_a_capped_result_parses(key):
    """The cap is generic: every list of any model's result (content_compliance's findings,
    document_metadata's headings, links and dates) keeps at most the limit, the stored result counts
    the rest per list, and parse_result reads it back as the model's own result."""
    model = catalogue().get(key)
    text = "# Title\n\n" + "\n\n".join(
        f"## Part {i}\n\nMail user{i}@example.com, see https://example.com/{i} on 2024-05-{i % 28 + 1:02d}."
        for i in range(30)
    )
    result = model.analyse_offline(text)
    lists = {name: len(value) for name, value in result if isinstance(value, list)}
    assert lists and all(n >= 28 for n in lists.values())

    stored = json.loads(stored_json(result, 5))
    assert {name: len(stored[name]) for name in lists} == dict.fromkeys(lists, 5)
    assert stored["omitted"] == {name: n - 5 for name, n in lists.items()}
    parsed, omitted = model.parse_stored(json.dumps(stored))
    assert omitted == stored["omitted"]
    assert model.parse_result(json.dumps(stored)) == result.model_copy(
        update={name: getattr(result, name)[:5] for name in lists}
    )
    assert json.loads(stored_json(result, 1000)) == json.loads(result.model_dump_json())  # nothing cut, no key


def flagged_rows(documents: int, findings: int, excerpt: str) -> pd.DataFrame:
    finding = {"category": "email", "kind": "e-mail address", "excerpt": excerpt, "line": 3}
    result = json.dumps({"findings": [finding] * findings, "risk_level": "medium", "compliant": False, "summary": "x"})
    failed = [
        {"filename": f"{'f' * 2000}_{i}.md", "status": "analysis_error", "result": None, "error": "E" * 5_000}
        for i in range(documents)
    ]
    ok = [{"filename": f"doc_{i:05d}.md", "status": "ok", "result": result, "error": ""} for i in range(documents)]
    return pd.DataFrame(ok + failed)


def batch_report(documents: int, labels: int) -> BatchReport:
    return BatchReport(
        run_id="run",
        project="p",
        model_key="content_compliance",
        ai_model="gpt-test",
        custom_instructions="C" * 1_000_000,
        status_counts={"ok": documents, "analysis_error": documents},
        cached=0,
        model_summary={"Languages": {f"{'l' * 1000}{i}": 1 for i in range(labels)}},
        usage=[],
    )


def test_report_html_has_a_bounded_size_whatever_the_batch():
    """report.html lists at most so many flagged documents, findings per document, failures and
    summary rows, cuts long text, and says how many more results.csv holds: twice the documents,
    each with more and longer findings, longer names, errors and labels, give a page of the same size."""
    compliance = catalogue().get("content_compliance")
    small = render_html(batch_report(600, 100), flagged_rows(600, 12, "u***@example.com " * 20), compliance)
    large = render_html(batch_report(1200, 200), flagged_rows(1200, 24, "u***@example.com " * 40), compliance)
    assert len(large.encode()) < 3_000_000
    assert abs(len(large) - len(small)) < 1000  # only the counts in the text differ
    assert "14 more not shown, see results.csv" in large
    assert "The first 500 are shown; results.csv holds all 1200." in large
    assert large.count("e-mail address") == 500 * 10


def test_report_html_escapes_what_documents_and_answers_bring(pipeline_home, instance, tmp_path):
    """Jinja2's autoescape is on for the report: a file name that is HTML reaches the page as text."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "<img src=x onerror=alert(1)>.md").write_text("Mail me at someone@example.com.\n")
    result = run_job(instance, batch_config(str(corpus)))
    page = report_files(pipeline_home, result.run_id)[2].read_text()
    assert "<img" not in page and "&lt;img src=x onerror=alert(1)&gt;.md" in page


def test_results_csv_cells_cannot_start_a_formula(pipeline_home, instance, capsys):
    """A document name or instruction beginning with =, +, -, @, a tab or a carriage return reaches
    results.csv, and the CLI's CSV, with a leading ' (OWASP's advice), so that no spreadsheet runs it."""
    names = ['=HYPERLINK("http://x","y").md', "+1+2.md", "-2+3.md", "@SUM(1).md", "\tcmd.md", "\rcmd.md"]
    documents = [
        {"filename": n, "markdown_content": f"Document {i}: mail user{i}@example.com."} for i, n in enumerate(names)
    ]
    result = run_job(instance, batch_config(documents=documents, custom_instructions="=1+1"))
    assert result.success

    capsys.readouterr()
    assert main(["results", result.run_id, "--format", "csv"]) == 0
    printed = capsys.readouterr().out
    with report_files(pipeline_home, result.run_id)[0].open(encoding="utf-8", newline="") as written:
        report_csv = written.read()  # newline="": a carriage return inside a cell stays one
    for text in (report_csv, printed):
        rows = list(csv.DictReader(io.StringIO(text)))
        assert sorted(r["filename"] for r in rows) == sorted("'" + name for name in names)
        assert {r["custom_instructions"] for r in rows} == {"'=1+1"}
        assert all(r["result"].startswith("{") for r in rows)


def test_numbers_stay_numbers_in_the_csv(tmp_path, pipeline_home, instance):
    """Only text is neutralised: a negative number in a numeric column is written as it is and read
    back as a number, and the report's numeric columns stay numeric."""
    path = tmp_path / "numbers.csv"
    write_csv(pd.DataFrame({"delta": [-3, 4], "ratio": [-1.5, 2.0], "label": ["-3", "ok"]}), path)
    back = pd.read_csv(path)
    assert back["delta"].tolist() == [-3, 4] and pd.api.types.is_integer_dtype(back["delta"])
    assert back["ratio"].tolist() == [-1.5, 2.0] and pd.api.types.is_float_dtype(back["ratio"])
    assert back["label"].tolist() == ["'-3", "ok"]
    assert path.read_text().splitlines()[1] == "-3,-1.5,'-3"

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.md").write_text("Mail me at someone@example.com.\n")
    result = run_job(instance, batch_config(str(corpus)))
    report = pd.read_csv(pipeline_home / "reports" / result.run_id / "results.csv")
    assert pd.api.types.is_float_dtype(report["latency_ms"]) and pd.api.types.is_numeric_dtype(report["attempts"])


def test_a_bad_findings_limit_refuses_the_launch_before_anything_is_paid_for(monkeypatch, tmp_path):
    """$BATCH_PIPELINE_MAX_FINDINGS is read when a result is stored, after an LLM's answer was
    bought: a value that is not a whole number is named at launch instead, with the other problems."""
    from batch_pipeline.batch.request import BatchRequest
    from batch_pipeline.context import ProcessingContext

    monkeypatch.setenv("BATCH_PIPELINE_MAX_FINDINGS", "lots")
    request = BatchRequest(
        project="p",
        source=str(tmp_path),
        documents=None,
        context=ProcessingContext(model_key="content_compliance", ai_model="gpt-test").pinned(catalogue()),
        partition_size=None,
        force=False,
        max_document_bytes=1000,
        follow_symlinks=False,
        analysis_timeout_seconds=60,
        on_document_failure="succeed",
    )
    assert any("BATCH_PIPELINE_MAX_FINDINGS" in problem for problem in request.problems())
