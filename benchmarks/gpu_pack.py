"""Packing small trials onto one GPU: tunesmith with {"gpu": 1/16} per trial vs the same trainings as plain
processes.

    python benchmarks/gpu_pack.py                 # 16 trials of a width-32 CNN on GPU 0
    python benchmarks/gpu_pack.py --device cpu --n 2 --seconds 3   # a smoke run without a GPU

Every training process (plain or trial) warms up, waits at a file barrier until all N are ready, then
trains for a fixed window and reports its samples/s; the aggregate is their sum, so process start-up and
CUDA initialisation are not counted for either side. Also reports the throughput of one process alone and
checks CUDA_VISIBLE_DEVICES in every trial. Needs torch.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def train_window(width: int, seconds: float, barrier: str, n: int, device: str, batch: int = 128) -> dict:
    import torch
    import torch.nn as nn

    torch.set_num_threads(1)
    dev = torch.device(device)
    model = nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width, width * 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(width * 2 * 8 * 8, 10)).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(batch, 3, 32, 32, device=dev)
    y = torch.randint(0, 10, (batch,), device=dev)
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    for _ in range(20):  # warm-up: CUDA context, kernels, allocator
        step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    # barrier: every process starts its window together
    open(os.path.join(barrier, f"{os.getpid()}"), "w").close()
    while len(os.listdir(barrier)) < n:
        time.sleep(0.01)
    steps = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(10):
            step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        steps += 10
    dt = time.perf_counter() - t0
    return {"samples_per_s": steps * batch / dt, "cuda_visible": os.environ.get("CUDA_VISIBLE_DEVICES", "unset"),
            "device_count": torch.cuda.device_count() if dev.type == "cuda" else 0}


def _plain(args: tuple) -> dict:
    return train_window(*args)


def plain(n: int, width: int, seconds: float, device: str) -> list[dict]:
    barrier = tempfile.mkdtemp(prefix="barrier_")
    with mp.get_context("spawn").Pool(n) as pool:
        return pool.map(_plain, [(width, seconds, barrier, n, device)] * n, chunksize=1)


def with_tunesmith(n: int, width: int, seconds: float, device: str) -> tuple[list[dict], float]:
    import tunesmith as ts

    barrier = tempfile.mkdtemp(prefix="barrier_")

    def trial(config):
        ts.report(train_window(width, seconds, barrier, n, device))

    gpu = 1.0 / n if device == "cuda" else 0.0
    t0 = time.perf_counter()
    res = ts.run(trial, num_samples=n, resources={"cpu": 1, "gpu": gpu}, verbose=0,
                 storage_path=tempfile.mkdtemp(prefix="gpu_pack_"), raise_on_failed_trial=True)
    return [t.last_result for t in res.trials], time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--json", help="also write the numbers to this file")
    args = ap.parse_args()

    one = plain(1, args.width, args.seconds, args.device)[0]["samples_per_s"]
    plain_runs = plain(args.n, args.width, args.seconds, args.device)
    plain_total = sum(r["samples_per_s"] for r in plain_runs)
    ts_runs, ts_wall = with_tunesmith(args.n, args.width, args.seconds, args.device)
    ts_total = sum(r["samples_per_s"] for r in ts_runs)
    visible = sorted({r["cuda_visible"] for r in ts_runs})
    expected = ["0"] if args.device == "cuda" and not os.environ.get("CUDA_VISIBLE_DEVICES") else visible
    out = {
        "n": args.n, "width": args.width, "window_s": args.seconds,
        "one_process_samples_per_s": one, "plain_total_samples_per_s": plain_total,
        "tunesmith_total_samples_per_s": ts_total, "tunesmith_vs_plain": ts_total / plain_total,
        "plain_vs_one": plain_total / one, "tunesmith_wall_s": ts_wall,
        "cuda_visible_devices_seen": visible,
        "cuda_visible_ok": visible == expected and all(r["device_count"] == 1 for r in ts_runs)
        if args.device == "cuda" else True,
    }
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{args.n} trials x width-{args.width} CNN on one {args.device} device")
    table.add_column("what")
    table.add_column("samples/s", justify="right")
    table.add_column("ratio", justify="right")
    table.add_row("1 plain process", f"{one:,.0f}", "1.00x")
    table.add_row(f"{args.n} plain processes", f"{plain_total:,.0f}", f"{plain_total / one:.2f}x of one")
    table.add_row(f"{args.n} tunesmith trials (gpu={1 / args.n:.4g} each)", f"{ts_total:,.0f}",
                  f"{ts_total / plain_total:.1%} of plain")
    Console(width=120).print(table)
    print(json.dumps(out, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
