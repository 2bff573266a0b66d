"""Smoke test of fp8pass as `pip install` gives it to users: run by the Python of a venv that has
the built wheel installed (not editable) and nothing of the checkout importable, from a folder
outside the checkout. Every CLI command's --help, `python -m fp8pass --help` under 2 s without
torch, `import fp8pass` loading neither diffusers nor the harness, and a convert / load_model round
trip of a tiny diffusers folder. Exits non-zero on the first failure."""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHECKOUT = Path(sys.argv[1]).resolve()
COMMANDS = ("bench", "convert", "report", "layers", "sweep")


def run(*args: str) -> str:
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"FAILED: python {' '.join(args)}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def main() -> None:
    where = Path(run("-c", "import fp8pass, sys; print(fp8pass.__file__)").strip()).resolve()
    if CHECKOUT in where.parents:
        sys.exit(f"FAILED: fp8pass was imported from the checkout ({where}), not from the wheel")
    loaded = json.loads(run("-c", "import sys, fp8pass, json; print(json.dumps(sorted(sys.modules)))"))
    heavy = [
        m
        for m in loaded
        if m.split(".")[0] in ("torch", "diffusers", "transformers") or m.startswith("fp8pass.")
    ]
    if heavy:
        sys.exit(f"FAILED: `import fp8pass` imported {heavy[:5]}")
    start = time.perf_counter()
    if "convert" not in run("-m", "fp8pass", "--help"):
        sys.exit("FAILED: python -m fp8pass --help does not list its commands")
    took = time.perf_counter() - start
    if took > 2:
        sys.exit(f"FAILED: python -m fp8pass --help took {took:.1f} s")
    for command in COMMANDS:
        run("-m", "fp8pass", command, "--help")
    with tempfile.TemporaryDirectory() as d:
        folder, out = Path(d) / "unet", Path(d) / "unet-fp8.safetensors"
        run("-c", _MAKE_FOLDER, str(folder))
        run("-m", "fp8pass", "convert", str(folder), str(out), "--quiet")
        print(run("-c", _LOAD, str(folder), str(out)).strip())
    print(f"wheel smoke test passed (fp8pass from {where.parent}; --help in {took:.2f} s)")


_MAKE_FOLDER = """
import sys, torch, diffusers
torch.manual_seed(0)
unet = diffusers.UNet2DConditionModel(
    block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), layers_per_block=1, cross_attention_dim=32,
    attention_head_dim=8, sample_size=8, norm_num_groups=16)
unet.to(torch.bfloat16).save_pretrained(sys.argv[1])
"""

_LOAD = """
import sys, torch, diffusers, fp8pass
folder, fp8_file = sys.argv[1], sys.argv[2]
ref = diffusers.UNet2DConditionModel.from_pretrained(folder, torch_dtype=torch.bfloat16).eval()
model, config = fp8pass.load_model(diffusers.UNet2DConditionModel, fp8_file, model_config=folder)
g = torch.Generator().manual_seed(0)
x, t = torch.randn(1, 4, 8, 8, generator=g).bfloat16(), torch.tensor([10])
text = torch.randn(1, 4, 32, generator=g).bfloat16()
be = fp8pass.FP8Backend(config, inner="aot_eager")
with torch.no_grad():
    out = torch.compile(model, backend=be)(x, t, text).sample
    want = ref(x, t, text).sample
converted = sum(r.converted for r in be.report())
db = 20 * torch.log10(want.float().norm() / (want.float() - out.float()).norm()).item()
assert converted > 0 and be.num_quantized == 0 and db > 20, (converted, be.num_quantized, db)
print(f"convert + load_model: {converted} layers FP8 from the file, SQNR {db:.1f} dB against bf16")
from fp8pass import native  # the wheel ships the C source, and the kernel builds from it
assert native.SOURCE.is_file() and "site-packages" in str(native.SOURCE), native.SOURCE
assert native.kernel() is not None, "the CPU conversion kernel did not build from the installed wheel"
"""

if __name__ == "__main__":
    os.chdir(tempfile.gettempdir())
    main()
