"""A batch from registration to stored results: what a launch asks for and its registration
(``registration``), its partitions, the per-partition runner that analyses them, and the
offline analysers' worker processes (``offline``)."""
