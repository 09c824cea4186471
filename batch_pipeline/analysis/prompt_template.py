"""An analysis's system prompt: a Jinja2 template rendered in Jinja's immutable sandbox, with
``custom_instructions`` handed to it as a value (text in it is never rendered as template)."""

from functools import cache

import jinja2
import jinja2.meta
import jinja2.sandbox

VARIABLES = frozenset({"custom_instructions"})


@cache
def _environment() -> jinja2.sandbox.ImmutableSandboxedEnvironment:
    return jinja2.sandbox.ImmutableSandboxedEnvironment(
        undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=False
    )


class TemplateProblem(ValueError):
    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line = line  # 1-based, within the template
        self.message = message


def template_problems(source: str) -> list[TemplateProblem]:
    """Syntax errors, and variables other than those a prompt is given."""
    try:
        parsed = _environment().parse(source)
    except jinja2.TemplateSyntaxError as e:
        return [TemplateProblem(e.lineno or 1, f"template error: {e.message}")]
    unknown = jinja2.meta.find_undeclared_variables(parsed) - VARIABLES
    if unknown:
        names = ", ".join(sorted(unknown))
        return [TemplateProblem(1, f"the prompt uses {names}; a prompt is given only {', '.join(sorted(VARIABLES))}")]
    for sample in ("", "Sample instructions."):  # what fails only when rendered (an include, 1/0, a missing attribute)
        try:
            _environment().from_string(source).render(custom_instructions=sample)
        except Exception as e:
            line = next((frame.tb_lineno for frame in _template_frames(e)), 1)
            return [TemplateProblem(line, f"template error when rendered: {type(e).__name__}: {e}")]
    return []


def _template_frames(error: BaseException):
    traceback = error.__traceback__
    while traceback is not None:
        if traceback.tb_frame.f_code.co_filename == "<template>":
            yield traceback
        traceback = traceback.tb_next


def uses_custom_instructions(source: str) -> bool:
    return "custom_instructions" in jinja2.meta.find_undeclared_variables(_environment().parse(source))


@cache
def _compiled(source: str) -> jinja2.Template:
    return _environment().from_string(source)


def render(source: str, custom_instructions: str) -> str:
    return _compiled(source).render(custom_instructions=custom_instructions)
