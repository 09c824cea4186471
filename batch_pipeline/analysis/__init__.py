"""The analyses: each is a definition file (prompt template, output schema, examples, summary;
``definition.py``), loaded with the deployment's others into a catalogue (``registry.py``) and run as
an ``Analysis`` (``analysis.py``). The two built-ins are definition files beside the Python that
attaches their offline analysers (``content_compliance``, ``document_metadata``), registered
through the same entry-point group a deployment's own packages use."""
