"""What runs cost: the price table (``prices``) and the spend limit a run's requests draw on (``spend``)."""
