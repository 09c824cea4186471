"""Pacing requests to a provider's rate limits: the limits (``limits``: configured, announced in
headers, per minute only when their reset shows it), the budget one analyser draws on
(``budget``), its pace while no requests limit is known (``adaptive``: from 429s), and where the
budget and that pace are shared (``store``: this process, or Redis)."""
