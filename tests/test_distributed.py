"""fp8pass under tensor and context parallelism: 2 CPU processes over gloo, tiny Flux and Wan.

The process group is started once for this module: :func:`_worker`, spawned on 2 ranks, runs every
case and writes what each rank saw (outputs, report rows, FP8 copies, released storage) to a file;
the tests assert on those files in the parent. Cases: tensor parallelism (Flux through diffusers'
``TensorParallelConfig`` and its ``_tp_plan``; Wan, which has none, through a plain
``parallelize_module`` plan; a toy through another) and Ulysses context parallelism (Flux, Wan),
each with compute ``cast`` and ``scaled_mm`` per channel and per tensor, against the same model
in one process.

diffusers' parallel setup assumes an accelerator (``rank % torch.accelerator.device_count()``
divides by zero on a CPU, and tensor parallelism refuses CPU meshes): the worker works around that
with ``fp8pass.bench.parallel.cpu_workarounds``, a harness patch, never a library one.
"""

import datetime
import os
import socket
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F

from fp8pass import FP8Backend, FP8Config, store
from fp8pass._compat.storage import is_released, local_tensor
from fp8pass.bench import parallel, zoo
from fp8pass.plan import plan_modules

from .helpers import BF16, sqnr

WORLD = 2
MODELS = ("flux-dev-tiny", "wan21-1.3b-tiny")
MODES = ("tp", "ulysses")
#: name -> (config, inner compiler). ``cast`` goes through AOT autograd, as under Inductor (DTensor
#: is desugared into local shards there); ``scaled_mm`` runs the rewritten graph as it is, so that
#: DTensor dispatches the fp8pass ops at run time (the same rules; this keeps the module in budget)
CONFIGS = {
    "cast": (FP8Config(compute="cast"), "aot_eager"),
    "scaled_mm-channel": (FP8Config(compute="scaled_mm", granularity="channel"), "eager"),
    "scaled_mm-tensor": (FP8Config(compute="scaled_mm", granularity="tensor"), "eager"),
}
CASES = [(m, mode, c) for m in MODELS for mode in MODES for c in CONFIGS]
TP_CASES = [c for c in CASES if c[1] == "tp"]
CP_CASES = [c for c in CASES if c[1] == "ulysses"]

#: the issue's bound: under tensor parallelism the FP8 output's SQNR against the single-process
#: bf16 model stays within this of the single-process FP8 output's (measured on the tiny models: 0.06-0.23 dB)
TP_DB = 0.5


def _case_id(case):
    return "-".join(case)


# -- the worker (runs in each spawned process) ---------------------------------------------------------


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)  # two ranks on a shared 2-core machine
    # a rank left waiting in a collective (its peer failed) gives up instead of hanging the suite
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=120))
    try:
        seen = {"single": {}, "parallel": {}}
        for i, name in enumerate(MODELS):  # single-process references, one model per rank
            if i % world == rank:
                seen["single"][name] = _single(name)
        for name in MODELS:
            seen["parallel"][(name, "ulysses", "bf16")] = _parallel_bf16(name, "ulysses", world)
            for mode in MODES:
                for key, (config, inner) in CONFIGS.items():
                    seen["parallel"][(name, mode, key)] = _failing_safely(
                        _parallel_fp8, name, mode, world, config, inner
                    )
        seen["toy"] = _failing_safely(_toy, world)
        torch.save(seen, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _failing_safely(fn, *args):
    """``fn(*args)``, or the error it raised: one failing case fails its own tests only."""
    try:
        return fn(*args)
    except Exception:
        return {"error": traceback.format_exc()}


def _single(name):
    model, inputs = zoo.build(name)
    seen = {"bf16": parallel.call(model, inputs)}
    for key, (config, inner) in CONFIGS.items():
        torch._dynamo.reset()
        model, inputs = zoo.build(name)
        seen[key] = _fp8_run(model, inputs, config, inner)
    return seen


def _parallel_bf16(name, mode, world):
    model, inputs = zoo.build(name)
    parallel.parallelize(model, mode, world)
    return parallel.call(model, inputs)


def _parallel_fp8(name, mode, world, config, inner):
    torch._dynamo.reset()
    model, inputs = zoo.build(name)
    parallel.parallelize(model, mode, world)
    return _fp8_run(model, inputs, config, inner)


def _fp8_run(model, inputs, config, inner):
    """Compile with fp8pass, call twice; what was converted, stored and released."""
    be = FP8Backend(config, inner=inner)
    compiled = torch.compile(model, backend=be)
    out = parallel.call(compiled, inputs)
    again = parallel.call(compiled, inputs)
    copies, released = {}, {}
    modules = dict(model.named_modules())
    for row in be.report():
        if not row.converted or row.name not in modules:  # a name that is no module path: see
            continue  # test_parallel_fp8_converts_the_layers_single_process_fp8_converts
        module = modules[row.name]
        entry = store.lookup(module.weight, config)
        q, scale = local_tensor(entry.q), local_tensor(entry.scale)
        placements = [str(getattr(t, "placements", None)) for t in (module.weight, entry.q, entry.scale)]
        blocks = getattr(module, "_tp_packed_row_blocks", None)  # Flux's single blocks' proj_out
        copies[row.name] = (q.view(torch.uint8).clone(), scale.clone(), placements, blocks)
        local = local_tensor(module.weight)
        released[row.name] = (is_released(module.weight), local.untyped_storage().nbytes())
    rows = [(r.name, r.converted, r.bytes_after, r.note) for r in be.report()]
    weight_bytes = parallel.rank_weight_bytes(model)
    return dict(
        out=out,
        again=again,
        rows=rows,
        copies=copies,
        released=released,
        graphs=be.num_graphs,
        weight_bytes=weight_bytes,
    )


class _Toy(nn.Module):
    """Two linears on one input (a projection group) and one on their product."""

    def __init__(self):
        super().__init__()
        self.to_q, self.to_k, self.to_out = nn.Linear(64, 128), nn.Linear(64, 128), nn.Linear(128, 64)

    def forward(self, x):
        return self.to_out(F.gelu(self.to_q(x)) * self.to_k(x))


def _toy(world):
    """A plain ``parallelize_module`` plan, then an eager call of the converted model; weights
    made DTensors by hand and a DTensor input (no module hooks: ``to_q`` and ``to_k`` read one
    input node, a projection group) with ``fuse_projections=True``; a DTensor convolution weight
    through the module planner."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor, Replicate, Shard, distribute_tensor
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

    config = FP8Config(compute="cast", min_weight_numel=0, keep_boundary=False, fuse_projections=True)
    mesh = init_device_mesh("cpu", (world,))

    def make():  # torch's default init: weights, not biases, carry the output (FP8 error shows)
        torch.manual_seed(0)
        return _Toy().to(BF16).requires_grad_(False)

    def shard(model, placements):
        for name, p in list(model.named_parameters()):
            module_name, _, attr = name.rpartition(".")
            dtensor = distribute_tensor(p, mesh, placements[name])
            setattr(model.get_submodule(module_name), attr, nn.Parameter(dtensor, requires_grad=False))
        return model

    x = torch.randn(4, 8, 64, dtype=BF16, generator=torch.Generator().manual_seed(1))
    seen = {"bf16": make()(x)}
    seen["single"] = _toy_run(make(), x, config)
    model = make()
    plan = {"to_q": ColwiseParallel(), "to_k": ColwiseParallel(), "to_out": RowwiseParallel()}
    parallelize_module(model, mesh, plan)
    seen["plan"] = _toy_run(model, x, config)
    try:
        model(x)
        seen["eager_call"] = "no error"
    except RuntimeError as e:
        seen["eager_call"] = str(e)
    col, row = [Shard(0)], [Shard(1)]
    placements = {f"{n}.{a}": col for n in ("to_q", "to_k") for a in ("weight", "bias")}
    placements |= {"to_out.weight": row, "to_out.bias": [Replicate()]}
    by_hand = shard(make(), placements)
    seen["by_hand"] = _toy_run(by_hand, DTensor.from_local(x, mesh, [Replicate()]), config)
    conv = nn.Conv1d(64, 64, 1).to(BF16).requires_grad_(False)
    conv.weight = nn.Parameter(distribute_tensor(conv.weight, mesh, [Shard(0)]), requires_grad=False)
    seen["conv_reason"] = plan_modules(nn.Sequential(conv), config)[0].reason
    return seen


def _toy_run(model, x, config):
    torch._dynamo.reset()
    be = FP8Backend(config, inner="aot_eager")
    with torch.no_grad():
        out = torch.compile(model, backend=be)(x)
    out = out.full_tensor() if hasattr(out, "full_tensor") else out  # a DTensor input gives a DTensor
    return dict(out=out.detach().clone(), rows=[(r.name, r.converted, r.note) for r in be.report()])


# -- the parent ------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """What each rank saw: one process group for the whole module."""
    out = tmp_path_factory.mktemp("distributed")
    mp.start_processes(_worker, args=(WORLD, _free_port(), str(out)), nprocs=WORLD, start_method="spawn")
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


@pytest.fixture(scope="module")
def single(ranks):
    return {name: seen for r in ranks for name, seen in r["single"].items()}


def _seen(rank_seen, case):
    seen = rank_seen["parallel"][case] if case != "toy" else rank_seen["toy"]
    assert "error" not in seen, seen.get("error")
    return seen


def _shard(t, dim, rank, blocks=None):
    """Rank ``rank``'s shard of ``t`` along ``dim``, each of ``blocks`` (proportions) split apart."""
    sizes = [t.shape[dim]] if blocks is None else [t.shape[dim] // sum(blocks) * b for b in blocks]
    parts = [part.chunk(WORLD, dim)[rank] for part in t.split(sizes, dim)]
    return torch.cat(parts, dim)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_parallel_fp8_converts_the_layers_single_process_fp8_converts(ranks, single, case):
    """Same layers, by the model's own module paths (not ``forward.__self__...``, the frame
    diffusers' context-parallel hooks give Dynamo), and boundary layers kept by structure."""
    name, _, key = case
    expected = {n: converted for n, converted, _, _ in single[name][key]["rows"]}
    assert sum(expected.values()) >= 20
    for r in ranks:
        rows = {n: converted for n, converted, _, _ in _seen(r, case)["rows"]}
        assert all("__self__" not in n and not n.startswith("forward") for n in rows), sorted(rows)
        assert {n for n, c in rows.items() if c} == {n for n, c in expected.items() if c}
        # a layer run outside every graph (Wan under context parallelism: diffusers' graph break in
        # its split hook) is absent from the report; every layer present is decided as in one process
        assert {n: expected.get(n) for n in rows} == rows


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_originals_are_released_on_every_rank(ranks, case):
    for r in ranks:
        seen = _seen(r, case)
        assert seen["released"], "nothing converted"
        assert all(flag and nbytes == 0 for flag, nbytes in seen["released"].values()), seen["released"]
        assert torch.equal(seen["out"], seen["again"])


@pytest.mark.parametrize("case", TP_CASES, ids=_case_id)
def test_each_rank_holds_its_shard_of_the_single_process_fp8_copy(ranks, single, case):
    """Column-wise shards carry their rows' scales; a row-wise shard's scale is the full row's
    (every rank the same, so the partial sums add up); per tensor, one global scale. The FP8
    bytes of sharded layers are 1/world of single-process ones."""
    name, _, key = case
    reference = single[name][key]["copies"]
    sharded_bytes = {r: 0 for r in range(WORLD)}
    for rank, r in enumerate(ranks):
        copies = _seen(r, case)["copies"]
        for layer, (q, scale, (w_place, q_place, s_place), blocks) in copies.items():
            q_ref, scale_ref, _, _ = reference[layer]
            if w_place == "None":  # a layer the plan leaves whole: the single-process copy
                assert torch.equal(q, q_ref) and torch.equal(scale, scale_ref), layer
                continue
            dim = 0 if "Shard(dim=0)" in w_place else 1
            assert q_place == w_place, (layer, q_place, w_place)
            assert q.shape[dim] * WORLD == q_ref.shape[dim] and q.numel() * WORLD == q_ref.numel()
            assert torch.equal(q, _shard(q_ref, dim, rank, blocks)), f"{layer}: FP8 shard differs"
            if scale_ref.dim() and dim == 0:
                assert torch.equal(scale, _shard(scale_ref, 0, rank)), f"{layer}: scales differ"
            else:  # per tensor, or a row-wise shard's per-row scale: the single-process scale
                assert "Replicate" in s_place, (layer, s_place)
                assert torch.equal(scale, scale_ref), f"{layer}: scale is not the full row's"
            sharded_bytes[rank] += q.numel()
    single_sharded = sum(
        reference[layer][0].numel()
        for layer, (_, _, places, _) in ranks[0]["parallel"][case]["copies"].items()
        if places[0] != "None"
    )
    assert single_sharded > 0
    assert all(b * WORLD == single_sharded for b in sharded_bytes.values()), (sharded_bytes, single_sharded)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_rank_weight_bytes_counts_the_local_fp8_copies_and_what_stays(ranks, single, case):
    """``parallel.rank_weight_bytes`` (what benchmarks/distributed.py reports): the FP8 bytes are
    this rank's copies and scales; under tensor parallelism each rank holds less than one process."""
    name, mode, key = case
    one = single[name][key]["weight_bytes"]
    for r in ranks:
        seen = _seen(r, case)
        copies = sum(
            q.numel() + scale.numel() * scale.element_size() for q, scale, _, _ in seen["copies"].values()
        )
        assert seen["weight_bytes"]["fp8"] == copies
        assert seen["weight_bytes"]["total"] == seen["weight_bytes"]["held"] + copies
        if mode == "tp":
            assert seen["weight_bytes"]["total"] < one["total"] and seen["weight_bytes"]["fp8"] < one["fp8"]
        else:
            assert seen["weight_bytes"] == one


@pytest.mark.parametrize("case", TP_CASES, ids=_case_id)
def test_tensor_parallel_output_stays_within_half_a_db_of_single_process_fp8(ranks, single, case):
    name, _, key = case
    bf16 = single[name]["bf16"]
    single_db = sqnr(bf16, single[name][key]["out"])
    out = _seen(ranks[0], case)["out"]
    assert torch.equal(out, _seen(ranks[1], case)["out"])  # replicated output
    assert abs(sqnr(bf16, out) - single_db) <= TP_DB, (sqnr(bf16, out), single_db)


@pytest.mark.parametrize("case", CP_CASES, ids=_case_id)
def test_ulysses_output_equals_single_process_fp8(ranks, single, case):
    """bf16 under Ulysses is bit-identical to one process, so FP8 must be too, except per-tensor
    ``scaled_mm``: each rank quantizes its own sequence chunk's activations with that chunk's
    absmax (per-row activation scales are per token, so a sequence split leaves them as they are)."""
    name, mode, key = case
    for r in ranks:
        assert torch.equal(r["parallel"][(name, mode, "bf16")], single[name]["bf16"])  # the premise
        out, reference = _seen(r, case)["out"], single[name][key]["out"]
        if key == "scaled_mm-tensor":
            bf16 = single[name]["bf16"]
            assert abs(sqnr(bf16, out) - sqnr(bf16, reference)) <= TP_DB
        else:
            assert torch.equal(out, reference)


def test_plain_plans_and_dtensor_weights_by_hand(ranks):
    for r in ranks:
        toy = _seen(r, "toy")
        single_db = sqnr(toy["bf16"], toy["single"]["out"])
        assert "fused with" in {n: note for n, _, note in toy["single"]["rows"]}["to_q"]
        for how in ("plan", "by_hand"):
            rows = {n: (converted, note) for n, converted, note in toy[how]["rows"]}
            assert len(rows) == 3 and all(converted for converted, _ in rows.values()), rows
            assert abs(sqnr(toy["bf16"], toy[how]["out"]) - single_db) <= TP_DB
        # the projection group of to_q / to_k, sharded: not fused (concatenating sharded FP8
        # weights would gather them across ranks)
        notes = {n: note for n, _, note in toy["by_hand"]["rows"]}
        assert "not fused: sharded (DTensor) weights" in notes["to_q"], notes
        assert "cannot run eagerly" in toy["eager_call"]
        assert "sharded (DTensor) convolution weight" in toy["conv_reason"]


def test_import_does_not_load_dtensor():
    code = "import sys, fp8pass\nassert 'torch.distributed.tensor' not in sys.modules\n"
    subprocess.run([sys.executable, "-c", code], check=True)
