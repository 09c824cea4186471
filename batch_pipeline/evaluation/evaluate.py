"""`batch-pipeline evaluate RUN --labels labels.jsonl`: a run scored against labelled answers, field
by field with compare's rules. A label line is ``{"filename": ..., "expected": {field: value}}`` (or
``"sha256"`` instead of ``filename``); a field a label leaves out is not scored. A labelled document
the run did not answer ok counts against it (``not_answered``)."""

from pydantic import BaseModel

from batch_pipeline.evaluation.compare import RunFigures, figures
from batch_pipeline.evaluation.labels import BadLabels, fields_problem
from batch_pipeline.evaluation.rules import ItemTally, rules_for
from batch_pipeline.evaluation.runs import LoadedRun


class FieldScore(BaseModel):
    field: str
    rule: str
    labelled: int  # documents whose label gives this field
    not_answered: int  # of those, the run has no ok result for
    accuracy: float | None = None  # all but lists
    precision: float | None = None  # lists: of their items, micro-averaged over documents
    recall: float | None = None
    f1: float | None = None

    @property
    def score(self) -> float:
        return self.f1 if self.f1 is not None else (self.accuracy or 0.0)


class Miss(BaseModel):
    filename: str
    field: str
    expected: object
    found: object


class Evaluation(BaseModel):
    run: RunFigures
    labels: int
    matched: int
    unmatched: list[str]  # labels naming no document of the run
    fields: list[FieldScore]
    overall_score: float | None  # the mean of the fields' scores (accuracy, or F1 for lists)
    misses: list[Miss]


def evaluate(run: LoadedRun, labels: list[dict]) -> Evaluation:
    by_filename = {name: content_hash for content_hash, name in run.filenames.items()}
    if problem := fields_problem(labels, run.analysis):
        raise BadLabels(problem)
    rules = rules_for(run.analysis.json_schema, [*run.results.values(), *(lab["expected"] for lab in labels)])
    matched, unmatched = [], []
    for label in labels:
        content_hash = label.get("sha256") or by_filename.get(label["filename"])
        if content_hash in run.statuses:
            matched.append((content_hash, label["expected"]))
        else:
            unmatched.append(label.get("filename") or label["sha256"])
    fields, misses = [], []
    for field, rule in rules.items():
        scored = [(h, expected[field]) for h, expected in matched if field in expected]
        if not scored:
            continue
        answered = [(h, value) for h, value in scored if h in run.results]
        score = FieldScore(
            field=field, rule=rule.described, labelled=len(scored), not_answered=len(scored) - len(answered)
        )
        if rule.rule == "set_f1":
            tally = ItemTally()
            for h, value in scored:
                found = run.results.get(h, {}).get(field)
                wanted, got = rule.items(value), rule.items(found)
                tally.add(wanted, got)
                if wanted != got:
                    misses.append(Miss(filename=run.filenames[h], field=field, expected=value, found=found))
            score.precision, score.recall, score.f1 = (
                round(tally.precision, 4),
                round(tally.recall, 4),
                round(tally.f1, 4),
            )
        else:
            right = 0
            for h, value in scored:
                found = run.results.get(h, {}).get(field)
                if h in run.results and rule.agree(value, found):
                    right += 1
                else:
                    misses.append(Miss(filename=run.filenames[h], field=field, expected=value, found=found))
            score.accuracy = round(right / len(scored), 4)
        fields.append(score)
    overall = round(sum(f.score for f in fields) / len(fields), 4) if fields else None
    return Evaluation(
        run=figures(run), labels=len(labels), matched=len(matched), unmatched=unmatched, fields=fields,
        overall_score=overall, misses=misses,
    )  # fmt: skip
