"""The analyses a deployment offers: definition files in the folders of ``BATCH_PIPELINE_ANALYSES``,
and Python packages that register one through the ``batch_pipeline.analyses`` entry-point group
(the two built-ins among them). Run config only picks a key among these.

A definition that cannot be used is kept with its error, so that one bad file never takes the
others down and every place that lists analyses (``batch-pipeline models``, ``check``, a launch
that names it, the code location's log) says what is wrong with it.
"""

import importlib.metadata
import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from pydantic import BaseModel

from batch_pipeline import settings
from batch_pipeline.analysis.analysis import Analysis, AttachedAnalyser, PackagedAnalysis, compiled
from batch_pipeline.analysis.definition import AnalysisDefinition, DefinitionInvalid, Problem, read_definition

ENTRY_POINT_GROUP = "batch_pipeline.analyses"
SUFFIXES = (".yaml", ".yml")
log = logging.getLogger(__name__)


class BrokenDefinition(BaseModel):
    key: str | None  # the key it would have had, when known
    origin: str
    error: str


class UnknownAnalysis(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class Catalogue:
    analyses: dict[str, Analysis]
    broken: tuple[BrokenDefinition, ...] = ()

    def get(self, key: str) -> Analysis:
        """The analysis for a key, or an error that names the valid keys (and the problem, for a broken one)."""
        if key in self.analyses:
            return self.analyses[key]
        errors = [b for b in self.broken if b.key == key]
        if errors:
            raise UnknownAnalysis(f"model_key {key!r} cannot be used: " + "; ".join(b.error for b in errors))
        raise UnknownAnalysis(f"unknown model_key {key!r}; valid keys: {', '.join(self.analyses) or 'none'}")

    @property
    def offered_keys(self) -> list[str]:
        """Every key a launch may name: the loaded ones, and the broken ones, which a launch refuses with their error."""
        return sorted({*self.analyses, *(b.key for b in self.broken if b.key)})

    @property
    def with_offline_analyser(self) -> list[str]:
        return [key for key, analysis in self.analyses.items() if analysis.offline is not None]


def _packaged() -> Iterable[tuple[str, AnalysisDefinition | DefinitionInvalid, AttachedAnalyser | None]]:
    for entry_point in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        origin = f"entry point {entry_point.name} = {entry_point.value}"
        try:
            packaged = entry_point.load()
            if not isinstance(packaged, PackagedAnalysis):
                raise TypeError(f"it is a {type(packaged).__name__}, not a batch_pipeline PackagedAnalysis")
            definition = read_definition(Path(packaged.definition_file))
        except DefinitionInvalid as e:
            yield origin, e, None
            continue
        except Exception as e:  # a broken package must not take the others down
            yield origin, DefinitionInvalid(origin, [_problem(f"{type(e).__name__}: {e}")], entry_point.name), None
            continue
        yield origin, definition, packaged.offline


def _problem(message: str) -> Problem:
    return Problem(line=None, message=message)


def _from_folders(folders: list[Path]) -> Iterable[tuple[str, AnalysisDefinition | DefinitionInvalid, None]]:
    for folder in folders:
        if not folder.is_dir():
            error = DefinitionInvalid(
                str(folder), [_problem(f"{settings.ANALYSES_ENV} names a folder that is not there")]
            )
            yield str(folder), error, None
            continue
        for path in sorted(p for p in folder.iterdir() if p.suffix in SUFFIXES and p.is_file()):
            try:
                yield str(path), read_definition(path), None
            except DefinitionInvalid as e:
                yield str(path), e, None
            except (OSError, UnicodeDecodeError) as e:
                yield str(path), DefinitionInvalid(str(path), [_problem(f"cannot be read: {e}")], path.stem), None


def load_catalogue(folders: list[Path] | None = None, packages: bool = True) -> Catalogue:
    """Every analysis from the installed packages and the folders (default: ``BATCH_PIPELINE_ANALYSES``'s)."""
    found = [
        *(_packaged() if packages else []),
        *_from_folders(settings.analyses_folders() if folders is None else folders),
    ]
    origins_by_key: dict[str, list[str]] = defaultdict(list)
    for origin, definition, _ in found:
        if isinstance(definition, AnalysisDefinition):
            origins_by_key[definition.key].append(origin)
    analyses: dict[str, Analysis] = {}
    broken: list[BrokenDefinition] = []
    for origin, definition, offline in found:
        if isinstance(definition, DefinitionInvalid):
            broken.append(BrokenDefinition(key=definition.key, origin=origin, error=str(definition)))
        elif len(origins_by_key[definition.key]) > 1:
            others = ", ".join(o for o in origins_by_key[definition.key] if o != origin)
            error = f"{origin}: the key {definition.key!r} is also defined by {others}; neither is loaded"
            broken.append(BrokenDefinition(key=definition.key, origin=origin, error=error))
        else:
            analyses[definition.key] = compiled(definition, offline)
    for item in broken:
        log.warning("analysis definition not loaded: %s", item.error)
    return Catalogue(dict(sorted(analyses.items())), tuple(broken))


@cache
def catalogue() -> Catalogue:
    """This process's catalogue, read once: a code location reload (a new process) reads the files again.
    A run never looks an analysis up here after its launch: it carries the definition it was launched with."""
    return load_catalogue()
