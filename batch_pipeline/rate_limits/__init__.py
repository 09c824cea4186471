"""Pacing requests to a provider's rate limits: the limits (``limits``: configured, announced in
headers), the budget one analyser draws on (``budget``), its pace when nothing is announced
(``adaptive``), and where the budget is shared (``store``: this process, or Redis)."""
