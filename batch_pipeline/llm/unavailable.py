"""The one error a launch expects from the provider, apart from the openai SDK (which only the
processes that talk to a provider load)."""


class LlmUnavailable(Exception):
    """The provider cannot serve this run (no key, key refused, model unknown, unreachable).
    Raised ``from None``: the message says everything, and the provider's raw error (which could
    echo request details) stays out of the event log."""
