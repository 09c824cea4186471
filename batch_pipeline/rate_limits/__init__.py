"""Pacing requests to a provider's rate limits: the limits (``limits``: configured, announced in
headers, per minute only when their reset shows it), the pacer one analyser's requests wait on
(``pacer``), its pace while no requests limit is known (``adaptive``: from 429s), and where the
pace is shared (``pace_state``: this process, or Redis)."""
