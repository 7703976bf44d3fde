"""How many workers a run starts, and with what resources, from the live nodes' resources
(`idard.bench.run.runner.shape_for`): a count the user gave is a request an autoscaling
cluster can grow for wherever one worker's resources are known."""

from __future__ import annotations

import pytest

from idard.bench.run.runner import RunOptions, WorkerShape, shape_for

TWO_CPU_NODES = [{"CPU": 4.0, "memory": 1e9}, {"CPU": 4.0}]


def test_gpu_workers_are_one_per_gpu_and_more_is_a_request() -> None:
    nodes = [{"CPU": 8.0, "GPU": 1.0}]
    assert shape_for(nodes, RunOptions(), units=100) == WorkerShape(count=1, num_cpus=1, num_gpus=1)
    assert shape_for(nodes, RunOptions(workers=8), units=100).count == 8  # 7 wait for GPU nodes to join
    assert shape_for(nodes, RunOptions(workers=8), units=3).count == 3  # never more workers than units


def test_cpu_workers_default_to_one_per_node_using_its_cores() -> None:
    assert shape_for(TWO_CPU_NODES, RunOptions(), units=100) == WorkerShape(count=2, num_cpus=4, num_gpus=0)


def test_a_cpu_worker_count_alone_divides_the_cores_there_now() -> None:
    assert shape_for(TWO_CPU_NODES, RunOptions(workers=4), units=100) == WorkerShape(4, 2, 0)
    assert shape_for(TWO_CPU_NODES, RunOptions(workers=16), units=100) == WorkerShape(8, 1, 0)  # capped: 8 cores


def test_cpu_workers_with_their_cores_given_are_a_request_the_autoscaler_can_grow_for() -> None:
    """Before, 16 workers of 2 cores on two 4-core nodes started 4 and a CPU autoscaling
    cluster never grew: no actor was left pending to ask for a node."""
    shape = shape_for(TWO_CPU_NODES, RunOptions(workers=16, cpus_per_worker=2), units=100)
    assert shape == WorkerShape(count=16, num_cpus=2, num_gpus=0)


def test_a_cluster_without_cpus_or_gpus_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="no CPU or GPU"):
        shape_for([{"memory": 1e9}], RunOptions(), units=1)
