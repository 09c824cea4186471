import dagster as dg
import pytest
import sqlalchemy as sa

from batch_pipeline.defs.assets import PROJECTS, record_project


class RacedInstance:
    """An instance where another launch adds the project's partition between this one's look and
    its insert, as Dagster's storage does it (a look, then an insert under a unique key)."""

    def __init__(self, added_by_the_other: bool = True):
        self.looks, self.added_by_the_other = 0, added_by_the_other

    def has_dynamic_partition(self, name: str, key: str) -> bool:
        self.looks += 1
        return self.looks > 1 and self.added_by_the_other

    def add_dynamic_partitions(self, name: str, keys: list[str]) -> None:
        raise sa.exc.IntegrityError("INSERT INTO dynamic_partitions", {}, Exception("UNIQUE constraint failed"))


def test_a_project_added_by_a_concurrent_first_launch_is_not_an_error():
    instance = RacedInstance()
    record_project(instance, "demo")
    assert instance.looks == 2


def test_a_failed_insert_that_left_no_partition_is_raised():
    with pytest.raises(sa.exc.IntegrityError):
        record_project(RacedInstance(added_by_the_other=False), "demo")


def test_the_projects_partition_is_recorded_once():
    with dg.instance_for_test() as instance:
        record_project(instance, "demo")
        record_project(instance, "demo")
        assert instance.get_dynamic_partitions(PROJECTS.name) == ["demo"]
