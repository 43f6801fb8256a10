"""The benchmarks' yardstick of the machine's speed: real measurements, recorded beside every benchmark run."""
import math

import torch

from benchmarks.machine_speed import describe, machine_speed


def test_machine_speed_measures_both_yardsticks_and_leaves_torchs_threads_as_they_were():
    threads = torch.get_num_threads()
    speed = machine_speed(repetitions=1)
    assert set(speed) == {"matmul_gflops", "copy_gb_s"}
    assert all(math.isfinite(value) and value > 0 for value in speed.values())
    assert torch.get_num_threads() == threads


def test_the_description_gives_the_start_and_the_end_of_a_run():
    start, end = {"matmul_gflops": 91.4, "copy_gb_s": 22.14}, {"matmul_gflops": 78.0, "copy_gb_s": 19.0}
    assert describe({"start": start, "end": end}).startswith(
        "machine speed at start / end: 91 / 78 GFLOP/s matmul, 22.1 / 19.0 GB/s copy (one thread")
    assert describe({"start": start}).startswith("machine speed at start: 91 GFLOP/s matmul, 22.1 GB/s copy")
