r"""Benchmark: speed and memory of the ENAS search loop.

Runs `enas_tf.search.image.Search` with the quickstart settings (micro, B = 3
nodes, L = 3, C0 = 8, batch 64; flags/quickstart.flags) for --epochs epochs
on each dataset and reports, per dataset:

  trace:        seconds of the first child step (tracing the one graph that
                serves every architecture) beyond a normal step;
  child images/s: training images per second in the child phase (a new
                architecture every step), epochs after the first;
  controller s: seconds of a controller phase (controller_steps updates of
                num_aggregate sampled architectures rewarded on validation
                minibatches);
  epoch s:      seconds per epoch after the first;
  peak RSS:     of the whole process (each dataset runs in its own).

Datasets: digits (bundled with scikit-learn) and Fashion-MNIST when its IDX
files are present (Debian's dataset-fashion-mnist package, or --data_dir).
CPU.

Usage:
  python bench/search_epoch.py
  python bench/search_epoch.py --datasets=digits --epochs=3
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICKSTART = dict(
    space="micro",
    num_nodes=3,
    num_layers=3,
    out_filters=8,
    batch_size=64,
    lr_t0=10,
    lr_t_mul=1,
    controller_steps=10,
    num_aggregate=5,
    log_arcs=5,
    derive_samples=20,
    pad=1,
    flip=False,
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--datasets", default="digits,fashion_mnist", help="Comma-separated datasets."
    )
    parser.add_argument("--epochs", type=int, default=3, help="Epochs per dataset.")
    parser.add_argument("--data_dir", default=None, help="Fashion-MNIST directory.")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def measure(dataset: str, epochs: int, data_dir) -> dict:
    sys.path.insert(0, ROOT)
    from enas_tf import data
    from enas_tf.configs.image import SearchConfig
    from enas_tf.search.image import Search

    splits = data.load_images(
        dataset, data_dir=data_dir, valid_size=360 if dataset == "digits" else 5000
    )
    config = SearchConfig.from_flat(**QUICKSTART, epochs=epochs)
    times = {"child": [], "controller": [], "first_step": None, "steps": []}
    with tempfile.TemporaryDirectory() as out:
        search = Search(config, splits, out, verbose=0)
        step = search.child_step

        def timed_step(batch, arc):
            start = time.perf_counter()
            result = step(batch, arc)
            float(result[0])
            times["steps"].append(time.perf_counter() - start)
            return result

        search.child_step = timed_step
        for phase in ("child", "controller"):
            original = getattr(search, f"_{phase}_phase")

            def wrapped(original=original, phase=phase):
                start = time.perf_counter()
                result = original()
                times[phase].append(time.perf_counter() - start)
                return result

            setattr(search, f"_{phase}_phase", wrapped)
        start = time.perf_counter()
        search.run()
        total = time.perf_counter() - start
    per_epoch = search.steps_per_epoch
    later_steps = sorted(times["steps"][per_epoch:])
    typical = later_steps[len(later_steps) // 2]
    images = len(splits.train_images)
    return {
        "dataset": dataset,
        "train_images": images,
        "trace_s": times["steps"][0] - typical,
        "child_images_per_s": images * (epochs - 1) / sum(times["child"][1:]),
        "controller_s": sum(times["controller"][1:]) / (epochs - 1),
        "epoch_s": (sum(times["child"][1:]) + sum(times["controller"][1:])) / (epochs - 1),
        "total_s": total,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.epochs < 2:
        sys.exit("--epochs must be >= 2 (the first epoch includes the trace).")
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if args.one:
        print(json.dumps(measure(args.one, args.epochs, args.data_dir)))
        return
    print(
        f"{'dataset':<14} {'images':>7} {'trace s':>8} {'child img/s':>12} "
        f"{'controller s':>13} {'epoch s':>8} {'peak RSS MB':>12}"
    )
    for dataset in args.datasets.split(","):
        command = [sys.executable, __file__, f"--one={dataset}", f"--epochs={args.epochs}"]
        if args.data_dir:
            command.append(f"--data_dir={args.data_dir}")
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            reason = (done.stderr.strip().splitlines() or ["failed"])[-1]
            print(f"{dataset:<14} skipped: {reason}")
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(
            f"{dataset:<14} {r['train_images']:>7} {r['trace_s']:>8.1f} "
            f"{r['child_images_per_s']:>12.0f} {r['controller_s']:>13.1f} "
            f"{r['epoch_s']:>8.1f} {r['peak_rss_mb']:>12.0f}"
        )


if __name__ == "__main__":
    main()
