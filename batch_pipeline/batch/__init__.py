"""A batch from registration to stored results: what a launch asks for and its registration
(``registration``), its partitions, and the per-partition runner that analyses them."""
