"""The store's tables: ``documents`` (one row per distinct document of a project), ``batch_runs``
(one row per run: its context, stored once), ``analysis_results`` (one row per run and
document), ``response_formats`` (what each LLM endpoint and model was found to accept),
``provider_limits`` (the rate limits a provider showed), ``provider_batches`` /
``provider_batch_documents`` / ``provider_batch_claims`` (what went to a provider's Batch API)
``run_budgets`` (a run's spend against its max_cost_usd), ``analysis_definitions`` (each definition a
run was launched with, by digest) and ``applied_migrations`` (the
one-time changes of stored data already made). docs/guide/where-data-lives.md explains
each column."""

import sqlalchemy as sa

metadata = sa.MetaData()

documents = sa.Table(
    "documents",
    metadata,
    sa.Column("document_id", sa.String(64), primary_key=True),
    sa.Column("project", sa.String(200), nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("filename", sa.Text, nullable=False),
    sa.Column("content", sa.Text),
    sa.Column("encoding", sa.String(40)),
    sa.Column("converter", sa.String(200)),  # what wrote content from the file (name and version); NULL: text
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    # document_id is derived from (project, content_hash), so the pair is unique by construction.
)

batch_runs = sa.Table(
    "batch_runs",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("project", sa.String(200), nullable=False),
    sa.Column("model_key", sa.String(100), nullable=False),
    sa.Column("ai_model", sa.String(200), nullable=False),
    sa.Column("custom_instructions", sa.Text, nullable=False),
    sa.Column("analyser_version", sa.String(40), nullable=False),
    sa.Column("context_key", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    # The analysis definition the run was launched with (analysis_definitions); NULL before issue 27.
    sa.Column("definition_digest", sa.String(64)),
    # JSON: how the run's checks ended (outcome.CheckOutcome each), written once its results are stored.
    sa.Column("checks", sa.Text),
)

# Every analysis definition a run was launched with, by its digest: what produced each run's results,
# whatever became of the file since.
analysis_definitions = sa.Table(
    "analysis_definitions",
    metadata,
    sa.Column("digest", sa.String(64), primary_key=True),
    sa.Column("model_key", sa.String(100), nullable=False),
    sa.Column("definition", sa.Text, nullable=False),  # JSON: key, description, prompt, schema, examples, summary
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

applied_migrations = sa.Table(
    "applied_migrations",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
)

# The context columns analysis_results held on every row before batch_runs (moved by create_schema).
CONTEXT_COLUMNS = ["model_key", "ai_model", "custom_instructions", "analyser_version"]

analysis_results = sa.Table(
    "analysis_results",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("document_id", sa.String(64), primary_key=True),
    sa.Column("project", sa.String(200), nullable=False),
    sa.Column("filename", sa.Text, nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("error", sa.Text, nullable=False, default=""),
    sa.Column("context_key", sa.String(64), nullable=False),  # the run's: the result cache looks rows up by it
    sa.Column("result", sa.Text),
    sa.Column("raw_output", sa.Text),
    sa.Column("cached_from_run_id", sa.String(64)),
    sa.Column("input_tokens", sa.Integer),
    sa.Column("cached_input_tokens", sa.Integer),
    sa.Column("output_tokens", sa.Integer),
    sa.Column("latency_ms", sa.Float),
    sa.Column("attempts", sa.Integer),
    sa.Column("request_id", sa.String(200)),
    sa.Column("answered_by_model", sa.String(200)),
    sa.Column("llm_api", sa.String(10)),  # online | batch: which price the answer was billed at
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
)

# The response format each endpoint and model took when last probed, so that runs skip the probe.
response_formats = sa.Table(
    "response_formats",
    metadata,
    sa.Column("endpoint", sa.String(500), primary_key=True),
    sa.Column("ai_model", sa.String(200), primary_key=True),
    sa.Column("mode", sa.String(40), nullable=False),
    sa.Column("settled_at", sa.DateTime(timezone=True), nullable=False),
)

# Batches sent to a provider's Batch API: recorded (with their documents) before the provider is
# asked to create them, so that no crash makes a run submit — and pay for — the same documents twice.
provider_batches = sa.Table(
    "provider_batches",
    metadata,
    sa.Column("batch_key", sa.String(64), primary_key=True),  # also in the batch's metadata at the provider
    sa.Column("endpoint", sa.String(500), nullable=False),
    sa.Column("context_key", sa.String(64), nullable=False),
    sa.Column("run_id", sa.String(64), nullable=False),  # the run that submitted it
    sa.Column("round", sa.Integer, nullable=False),  # 0, then 1, 2, ... for documents re-submitted after expiry
    sa.Column("input_file_id", sa.String(200)),
    sa.Column("batch_id", sa.String(200)),
    sa.Column(
        "state", sa.String(20), nullable=False
    ),  # preparing | creating | submitted | collecting | collected | abandoned
    sa.Column("provider_status", sa.String(40)),
    sa.Column("request_counts", sa.String(200)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    # Who may create it, until when (renewed while that process lives); NULL in stores from before leases.
    sa.Column("owner", sa.String(100)),
    sa.Column("lease_until", sa.DateTime(timezone=True)),
    # What its lines may cost at worst, held in budget_run_id's budget until it is collected or
    # abandoned (NULL: sent without a max_cost_usd, or before reservations were kept here).
    sa.Column("reserved_usd", sa.Float),
    sa.Column("budget_run_id", sa.String(64)),
)

provider_batch_documents = sa.Table(
    "provider_batch_documents",
    metadata,
    sa.Column("batch_key", sa.String(64), primary_key=True),
    sa.Column("document_id", sa.String(64), primary_key=True),
)

# A document in a batch not yet collected or abandoned, per endpoint and context: the primary key
# lets one open batch hold it, so that concurrent runs and workers cannot both send it.
provider_batch_claims = sa.Table(
    "provider_batch_claims",
    metadata,
    sa.Column("endpoint", sa.String(500), primary_key=True),
    sa.Column("context_key", sa.String(64), primary_key=True),
    sa.Column("document_id", sa.String(64), primary_key=True),
    sa.Column("batch_key", sa.String(64), nullable=False),
)

# The rate limits a provider, model and key showed (announced, or found from 429s; by fingerprint,
# never the key), so that a later run paces to them from its first request without Redis.
provider_limits = sa.Table(
    "provider_limits",
    metadata,
    sa.Column("fingerprint", sa.String(64), primary_key=True),
    sa.Column("limits", sa.String(500), nullable=False),
    sa.Column("learned_at", sa.DateTime(timezone=True), nullable=False),
)

# A run's max_cost_usd: what it spent and what its requests in flight may cost at worst.
run_budgets = sa.Table(
    "run_budgets",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("max_cost_usd", sa.Float, nullable=False),
    sa.Column("spent_usd", sa.Float, nullable=False),
    sa.Column("reserved_usd", sa.Float, nullable=False),
)

_without_content = documents.c.content.is_(None)

indexes = [
    sa.Index("ix_results_cache_lookup", analysis_results.c.document_id, analysis_results.c.context_key),
    # Partial: only documents stored without content (a failed read or conversion), which each
    # registration looks up to fill in, so that the look-up costs nothing when there are none.
    sa.Index(
        "ix_documents_without_content",
        documents.c.project,
        documents.c.document_id,
        sqlite_where=_without_content,
        postgresql_where=_without_content,
    ),
    sa.Index("ix_provider_batch_documents", provider_batch_documents.c.document_id),
    sa.Index("ix_provider_batches_run", provider_batches.c.run_id),
    sa.Index("ix_provider_batch_claims_batch", provider_batch_claims.c.batch_key),
]

RESULT_COLUMNS = [
    "run_id", "document_id", "filename", "converter", "status", "error", "model_key", "ai_model", "custom_instructions",
    "definition_digest", "result", "cached_from_run_id", "input_tokens", "cached_input_tokens", "output_tokens", "latency_ms",
    "attempts", "request_id", "answered_by_model", "llm_api", "raw_output",
]  # fmt: skip


RUN_COLUMNS = [*CONTEXT_COLUMNS, "definition_digest"]  # results show them from batch_runs
DOCUMENT_COLUMNS = ["converter"]  # results show them from the documents table
INTEGER_COLUMNS = ["input_tokens", "cached_input_tokens", "output_tokens", "attempts"]
