"""Peak memory while loading a full-size FP8 checkpoint into a meta skeleton (fp8pass.load_fp8).

The claim under test: loading never materialises the model in its original precision, so the peak
stays within the FP8 weights + the unconverted weights + one layer's original-precision weight.

1. A checkpoint with random weights is written without ever holding the whole model in bf16: the
   model is built on ``meta``; each converted weight is quantized from a random bf16 tensor one
   layer at a time and registered as an already-converted FP8 copy; the other weights are random
   bf16; then ``fp8pass.save_fp8`` writes the file (its own format code, nothing duplicated here).
2. A fresh process builds the skeleton on ``meta`` and runs ``load_fp8`` onto the device, while
   the peak is taken: ``torch.cuda.max_memory_allocated`` on CUDA; on CPU the resident memory
   (``VmRSS`` in /proc/self/status, sampled every millisecond in a thread), minus what the process
   held before loading. On CPU safetensors maps the file and hands out tensors backed by the
   mapping, so the weights are resident as file-backed pages, not copies, and only once read: the
   peak is taken after loading *and* reading every byte of every weight once (as a first forward
   would). ``RssAnon`` (copies the process made) is reported too.

    python benchmarks/load_memory.py --model sd15 --json benchmarks/results/load-memory-sd15-cpu-DATE.json

``--source diffusers-bf16`` measures the other way in: a diffusers model folder in bf16, sharded as
``save_pretrained`` shards it (``diffusion_pytorch_model-0000K-of-0000N.safetensors`` + the index
+ ``config.json``), written one random tensor at a time, then, each in a fresh process,
``fp8pass.load_model(cls, folder)`` (quantizing on the way in) and ``fp8pass.convert(folder,
file)``. The bound there is computed from what the loaded model holds: FP8 copies + kept tensors +
the largest converted weight in bf16 (the one tensor being quantized).

    python benchmarks/load_memory.py --model flux-dev --source diffusers-bf16 --json ...
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import torch

import fp8pass
from fp8pass import FP8Config, store
from fp8pass.bench import zoo
from fp8pass.bench.variants import resolve_device
from fp8pass.plan import plan_modules
from fp8pass.quantize import quantize_weight


def write_checkpoint(name: str, path: Path, config: FP8Config) -> dict[str, int]:
    """Random weights, FP8 where ``config`` converts; returns the byte counts the bound needs."""
    model = zoo.build_model(name, "meta")
    converted = {
        id(la.weight.tensor) for la in plan_modules(model, config, check_values=False) if la.converted
    }
    g = torch.Generator().manual_seed(0)
    sizes = {"fp8_bytes": 0, "kept_bytes": 0, "largest_converted_bf16_bytes": 0, "converted_bf16_bytes": 0}
    made: dict[int, torch.Tensor] = {}  # a tied weight is made once and assigned to every owner
    fp8: list[tuple[torch.nn.Parameter, torch.Tensor, torch.Tensor]] = []
    for module in model.modules():
        for attr, t in list(module._parameters.items()) + list(module._buffers.items()):
            if t is None:
                continue
            if id(t) not in made:
                made[id(t)] = _make(t, id(t) in converted, config, g, sizes, fp8)
            value = made[id(t)]
            if attr in module._parameters:
                module._parameters[attr] = value
            else:
                module._buffers[attr] = value.detach()
    for param, q, scale in fp8:  # the model is complete: its hollow weights' FP8 copies go to the store
        store.adopt(model, param, config, q, scale)
    fp8pass.save_fp8(model, path, config)
    return sizes


def _make(
    t: torch.Tensor, convert: bool, config: FP8Config, g: torch.Generator, sizes: dict[str, int], fp8: list
) -> torch.nn.Parameter:
    if not t.is_floating_point():
        value = torch.zeros(t.shape, dtype=t.dtype)
    else:
        value = (torch.randn(t.shape, generator=g) * 0.02).to(t.dtype)
    nbytes = value.numel() * value.element_size()
    if not convert:
        sizes["kept_bytes"] += nbytes
        return torch.nn.Parameter(value, requires_grad=False)
    q, scale = quantize_weight(value, config.dtype, config.granularity)
    param = torch.nn.Parameter(torch.empty(t.shape, dtype=t.dtype), requires_grad=False)
    fp8pass._compat.release_storage(param)
    fp8.append((param, q, scale))
    sizes["fp8_bytes"] += q.numel() * q.element_size() + scale.numel() * scale.element_size()
    sizes["converted_bf16_bytes"] += nbytes
    sizes["largest_converted_bf16_bytes"] = max(sizes["largest_converted_bf16_bytes"], nbytes)
    return param


_SHARD_BYTES = 5 * 10**9  # save_pretrained's default max_shard_size ("5GB")


def write_diffusers_folder(name: str, folder: Path) -> dict[str, int]:
    """A diffusers model folder in bf16, sharded like ``save_pretrained``, with random weights made
    and written one tensor at a time (never the whole model)."""
    import diffusers

    from fp8pass.safetensors_io import StreamWriter

    entry = zoo.MODELS[name]
    model = zoo.build_model(name, "meta")
    items = [(k, v.dtype, tuple(v.shape)) for k, v in model.state_dict().items()]
    shards: list[list[tuple[str, torch.dtype, tuple[int, ...]]]] = [[]]
    size = 0
    for item in items:
        nbytes = torch.Size(item[2]).numel() * item[1].itemsize
        if shards[-1] and size + nbytes > _SHARD_BYTES:
            shards.append([])
            size = 0
        shards[-1].append(item)
        size += nbytes
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    weight_map = {}
    for i, shard in enumerate(shards, 1):
        file = f"diffusion_pytorch_model-{i:05d}-of-{len(shards):05d}.safetensors"
        with StreamWriter(folder / file, shard, {"format": "pt"}) as out:
            for key, dtype, shape in shard:
                value = (
                    torch.randn(shape, generator=g) * 0.02 if dtype.is_floating_point else torch.zeros(shape)
                )
                out.write(key, value.to(dtype))
                weight_map[key] = file
    total = sum(torch.Size(s).numel() * d.itemsize for _, d, s in items)
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    config = {"_class_name": entry.cls, "_diffusers_version": diffusers.__version__, **entry.config}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    return {"checkpoint_bytes": total, "shards": len(shards)}


def _held(model: torch.nn.Module) -> dict[str, int]:
    """What a loaded model holds: FP8 copies (with scales), kept tensors, and the bound's one tensor."""
    fp8 = kept = largest = converted = 0
    seen: set[int] = set()
    for t in [*model.parameters(), *model.buffers()]:
        if id(t) in seen:
            continue
        seen.add(id(t))
        entries = store.entries(t)
        if entries:
            fp8 += sum(
                e.q.numel() * e.q.element_size() + e.scale.numel() * e.scale.element_size() for e in entries
            )
            nbytes = t.numel() * t.element_size()
            converted += nbytes
            largest = max(largest, nbytes)
        elif not fp8pass._compat.is_released(t):
            kept += t.numel() * t.element_size()
    return {
        "fp8_bytes": fp8,
        "kept_bytes": kept,
        "largest_converted_bf16_bytes": largest,
        "converted_bf16_bytes": converted,
    }


def _sampling():
    """Start sampling this process's resident memory every millisecond; returns (start, stop())."""
    start, peak, done = _rss(), [0, 0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[:] = map(max, peak, _rss())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()

    def stop() -> dict[str, int]:
        done.set()
        sampler.join()
        end = _rss()
        top = list(map(max, peak, end))
        return {
            "peak_bytes": top[1] - start[1],
            "peak_anonymous_bytes": top[0] - start[0],
            "held_after_bytes": end[1] - start[1],
        }

    return stop


def measure_folder(name: str, folder: Path, job: str) -> dict[str, Any]:
    """In this process: ``load_model`` (then read every weight) or ``convert``, with the peak."""
    import diffusers

    import fp8pass.keymap
    import fp8pass.sources
    import fp8pass.structure  # noqa: F401 -- imported before the start: modules are not weights

    cls = getattr(diffusers, zoo.MODELS[name].cls)
    stop = _sampling()
    t0 = time.perf_counter()
    if job == "load_model":
        model, _ = fp8pass.load_model(cls, folder, "cpu")
        seconds = time.perf_counter() - t0
        _read_every_weight(model)
        return {**stop(), "seconds": seconds, **_held(model)}
    out = folder.parent / f"{name}-fp8.safetensors"
    fp8pass.checkpoint.convert(folder, out, model_class=cls)
    seconds = time.perf_counter() - t0
    measured = {**stop(), "seconds": seconds, "output_file_bytes": out.stat().st_size}
    out.unlink()
    return measured


def _child(args: list[str]) -> dict[str, Any]:
    child = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True, text=True)
    return json.loads(child.stdout.strip().splitlines()[-1])


def main_folder(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        folder = Path(tmp) / args.model
        t0 = time.perf_counter()
        written = write_diffusers_folder(args.model, folder)
        written["write_seconds"] = round(time.perf_counter() - t0, 1)
        jobs = {}
        for job in ("load_model", "convert"):
            jobs[job] = _child(["--model", args.model, "--measure-folder", str(folder), "--job", job])
    held = {
        k: jobs["load_model"].pop(k)
        for k in list(jobs["load_model"])
        if k.endswith("_bytes") and "peak" not in k and "held_after" not in k
    }
    bound = held["fp8_bytes"] + held["kept_bytes"] + held["largest_converted_bf16_bytes"]
    for m in jobs.values():
        m["within_bound"] = m["peak_bytes"] <= bound
    gib = 2**30
    for job, m in jobs.items():
        print(
            f"{args.model} {job} from a bf16 diffusers folder ({written['shards']} shards, "
            f"{written['checkpoint_bytes'] / gib:.2f} GiB): peak {m['peak_bytes'] / gib:.2f} GiB "
            f"(anonymous {m['peak_anonymous_bytes'] / gib:.2f}), {m['seconds']:.0f} s; bound "
            f"{bound / gib:.2f} GiB = FP8 {held['fp8_bytes'] / gib:.2f} + kept {held['kept_bytes'] / gib:.2f} "
            f"+ one tensor {held['largest_converted_bf16_bytes'] / gib:.3f}; within: {m['within_bound']}"
        )
    return {"source": "diffusers-bf16 sharded folder", **written, **held, "bound_bytes": bound, **jobs}


def _rss() -> tuple[int, int]:
    """(anonymous, total) resident bytes of this process, from /proc/self/status."""
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("RssAnon", "VmRSS"):
                fields[key] = int(value.split()[0]) * 1024
    return fields["RssAnon"], fields["VmRSS"]


def measure_load(name: str, path: Path, device: torch.device) -> dict[str, float]:
    """In this process: build the skeleton, load, and return the peak above the starting point."""
    model = zoo.build_model(name, "meta")
    if device.type == "cuda":
        torch.cuda.synchronize()
        start = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    else:
        stop = _sampling()
    t0 = time.perf_counter()
    fp8pass.load_fp8(model, path, device)
    seconds = time.perf_counter() - t0
    _read_every_weight(model)  # what a first forward does: on CPU this pages the mapped file in
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated(device) - start
        return {
            "peak_bytes": peak,
            "held_after_bytes": torch.cuda.memory_allocated(device) - start,
            "load_seconds": seconds,
        }
    return {**stop(), "load_seconds": seconds}


def _read_every_weight(model: torch.nn.Module) -> None:
    """Read every byte of every weight the model now holds (FP8 copies included), allocating nothing."""
    for t in [*model.parameters(), *model.buffers()]:
        for held in [e.q for e in store.entries(t)] or ([] if fp8pass._compat.is_released(t) else [t]):
            if held.numel():
                held.detach().view(-1).view(torch.uint8).max()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="sd15")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--source", default="fp8pass", choices=["fp8pass", "diffusers-bf16"])
    parser.add_argument("--tmp", type=Path, help="where to write the checkpoint (default: the system's temp)")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # the child process's job
    parser.add_argument("--measure-folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    args = parser.parse_args()
    device = resolve_device(args.device)
    if args.measure:
        print(json.dumps(measure_load(args.model, args.measure, device)))
        return
    if args.measure_folder:
        print(json.dumps(measure_folder(args.model, args.measure_folder, args.job)))
        return
    if args.source == "diffusers-bf16":
        if device.type != "cpu":
            raise SystemExit("--source diffusers-bf16 measures CPU resident memory; run it with --device cpu")
        result = {
            "environment": {
                "date": datetime.date.today().isoformat(),
                "model": args.model,
                "device": "cpu",
                "torch": torch.__version__,
                "peak_measured_as": "VmRSS (anonymous + file-backed) sampled every 1 ms, above the "
                "process's own before loading; the checkpoint is read with plain reads, not mapped",
            },
            **main_folder(args),
        }
        if args.json:
            args.json.write_text(json.dumps(result, indent=2) + "\n")
        return
    config = FP8Config()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{args.model}-fp8.safetensors"
        t0 = time.perf_counter()
        sizes = write_checkpoint(args.model, path, config)
        write_seconds = time.perf_counter() - t0
        child = subprocess.run(
            [
                sys.executable,
                __file__,
                "--model",
                args.model,
                "--device",
                str(device),
                "--measure",
                str(path),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        measured = json.loads(child.stdout.strip().splitlines()[-1])
        file_bytes = path.stat().st_size
    bound = sizes["fp8_bytes"] + sizes["kept_bytes"] + sizes["largest_converted_bf16_bytes"]
    result = {
        "environment": {
            "date": datetime.date.today().isoformat(),
            "model": args.model,
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "torch": torch.__version__,
            "peak_measured_as": "torch.cuda.max_memory_allocated"
            if device.type == "cuda"
            else "VmRSS (anonymous + file-backed) sampled every 1 ms, above the process's own before loading",
        },
        **sizes,
        "checkpoint_file_bytes": file_bytes,
        "write_seconds": round(write_seconds, 1),
        **measured,
        "bound_bytes": bound,
        "peak_within_bound": measured["peak_bytes"] <= bound,
    }
    gib = 2**30
    print(
        f"{args.model} on {device.type}: peak {measured['peak_bytes'] / gib:.2f} GiB while loading; "
        f"FP8 weights {sizes['fp8_bytes'] / gib:.2f} GiB + kept {sizes['kept_bytes'] / gib:.2f} GiB + one layer "
        f"{sizes['largest_converted_bf16_bytes'] / gib:.3f} GiB = bound {bound / gib:.2f} GiB "
        f"(converted weights in bf16: {sizes['converted_bf16_bytes'] / gib:.2f} GiB); "
        f"within bound: {result['peak_within_bound']}"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
