"""Reading TensorFlow profiles for the benchmarks: time per op type."""

from __future__ import annotations

import collections
import glob
import os


def top_ops(profile_dir: str, count: int) -> list[tuple[str, float, int]]:
    """(op type, total ms, occurrences) of the profiled host ops, largest
    first. Ops that only call functions (`If`, `Case`, `PartitionedCall`,
    ...) are left out: their time is their body's ops'."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    paths = sorted(glob.glob(os.path.join(profile_dir, "**", "*.xplane.pb"), recursive=True))
    if not paths:
        return []
    space = xplane_pb2.XSpace()
    with open(paths[-1], "rb") as f:
        space.ParseFromString(f.read())
    calls = {
        "If",
        "StatelessIf",
        "Case",
        "StatelessCase",
        "While",
        "StatelessWhile",
        "PartitionedCall",
        "StatefulPartitionedCall",
    }
    totals = collections.defaultdict(lambda: [0.0, 0])
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):  # the executors' threads
                continue
            for event in line.events:
                meta = plane.event_metadata[event.metadata_id]
                if ":" not in meta.name or "::" in meta.name:  # runtime events
                    continue
                name, kind = meta.name.rsplit(":", 1)
                if kind in calls:
                    continue
                # Ops of the backward pass carry "gradient" in their scope.
                part = "backward" if "gradient" in name.lower() else "forward/update"
                totals[f"{kind} ({part})"][0] += event.duration_ps / 1e9
                totals[f"{kind} ({part})"][1] += 1
    rows = sorted(((k, ms, n) for k, (ms, n) in totals.items()), key=lambda r: -r[1])
    return rows[:count]


def print_top_ops(profile_dir: str, count: int, steps: int, what: str = "steps") -> None:
    """Prints the `count` costliest op types of a profile of `steps` steps:
    ms per step, share of all op time, calls per step."""
    rows = top_ops(profile_dir, count)
    total = sum(ms for _, ms, _ in top_ops(profile_dir, 10**6)) or float("nan")
    print(
        f"\nprofile of {steps} {what} ({profile_dir}): op, ms per step, share of "
        "op time, calls per step"
    )
    for kind, ms, n in rows:
        print(f"  {kind:<48} {ms / steps:9.1f} {ms / total:6.1%} {n / steps:7.0f}")
