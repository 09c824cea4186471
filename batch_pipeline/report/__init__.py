"""The run's report (counts, the model's own summary, tokens and cost; CSV and Markdown) and the
price table behind its cost estimate."""
