"""The evidence behind compile_pipeline's per-component defaults, on CPU.

1. Tiny pipelines (fp8pass.bench.pipelines: SD1.5, SDXL, Flux, SD3, Wan, Qwen-Image), from a
   prompt: image (or frames) PSNR / SSIM against the bf16 pipeline with the same seed, for the
   denoiser alone in FP8, the whole pipeline (denoiser + text encoders: the default), and the
   whole pipeline with the VAE too.
2. Full-size text encoders at real sequence lengths: CLIP-L (77 tokens), T5-XXL encoder (512
   tokens, 4.7B parameters: fits this machine's 24 GiB in bf16): output SQNR (last hidden state;
   the penultimate for CLIP, which SDXL reads), with fp8pass's default config (aot_eager).
3. Full-size VAE decoders (SD / SDXL 4-channel AutoencoderKL, Flux's 16-channel one) decoding a
   512x512 image: PSNR of the FP8 decoder's image against the bf16 decoder's, and the layers whose
   FP8 weight alone costs the image most (fp8pass.analyze).
4. Whole-pipeline weight bytes from the published configs on the meta device: bf16, denoiser-only
   FP8, the default (denoiser + text encoders) and everything including the VAE.

    python benchmarks/pipeline_evidence.py --json benchmarks/results/pipeline-evidence-cpu-DATE.json [--skip t5]
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
from pathlib import Path

import torch

from fp8pass import FP8Backend, FP8Config
from fp8pass.analyze import analyze, weight_bytes
from fp8pass.bench import zoo
from fp8pass.bench.pipelines import FULL_SIZE, PIPELINES, build_full_size_component, build_tiny_pipeline
from fp8pass.metrics import psnr, sqnr, ssim
from fp8pass.pipeline import compile_pipeline, component_kind


def _images(pipe, call) -> torch.Tensor:
    out = pipe(**{**call, "generator": torch.Generator().manual_seed(0)})
    x = out.images if hasattr(out, "images") else out.frames
    x = torch.as_tensor(x).float()
    x = x.reshape(-1, *x.shape[-3:])
    return (x.permute(0, 3, 1, 2) if x.shape[-1] == 3 else x).clamp(0, 1)


def tiny_pipelines() -> dict:
    result = {}
    for name in PIPELINES:
        row = {}
        for label in ("denoiser only", "default (denoiser + text encoders)", "everything, VAE too"):
            torch._dynamo.reset()
            pipe, call = build_tiny_pipeline(name)
            ref = _images(pipe, call)
            names = [n for n, m in pipe.components.items() if isinstance(m, torch.nn.Module)]
            kinds = {n: component_kind(n, getattr(pipe, n)) for n in names}
            chosen = {
                "denoiser only": [n for n in names if kinds[n] == "denoiser"],
                "default (denoiser + text encoders)": None,
                "everything, VAE too": names,
            }[label]
            vaes = [n for n in (chosen or []) if kinds[n] == "vae"]
            rest = None if chosen is None else [n for n in chosen if n not in vaes]
            report = compile_pipeline(pipe, inner="aot_eager", components=rest)
            # VAEs under Inductor: torch's aot_eager alone fails on their non-contiguous group_norm
            # inputs ("Expected X.is_contiguous"), Inductor does not (tests/test_pipeline.py)
            vae_report = compile_pipeline(pipe, components=vaes) if vaes else None
            out = _images(pipe, call)
            before = report.totals()["bytes_before"]
            after = report.totals()["bytes_after"]
            if vae_report is not None:  # each report counts every component; take the VAEs' from theirs
                for r_vae, r_rest in zip(vae_report.summary(), report.summary(), strict=True):
                    if r_vae["component"] in vaes:
                        after += r_vae["bytes_after"] - r_rest["bytes_after"]
            row[label] = {
                "psnr_db": round(psnr(ref, out), 2),
                "ssim": round(ssim(ref, out), 5),
                "weights_ratio": round(after / before, 4),
            }
        result[name] = row
        print(name, row, flush=True)
    return result


def _encoder_sqnr(pipeline: str, component: str, tokens: int) -> dict:
    model = build_full_size_component(pipeline, component, "cpu")
    ids = torch.randint(0, model.config.vocab_size, (1, tokens), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(ids, output_hidden_states=True)
        torch._dynamo.reset()
        be = FP8Backend(FP8Config(), inner="aot_eager")
        out = torch.compile(model, backend=be)(ids, output_hidden_states=True)
    rows = be.report()
    result = {
        "layers": f"{sum(r.converted for r in rows)}/{len(rows)}",
        "last_hidden_state_sqnr_db": round(sqnr(ref.last_hidden_state, out.last_hidden_state), 2),
        "penultimate_hidden_state_sqnr_db": round(sqnr(ref.hidden_states[-2], out.hidden_states[-2]), 2),
        "kept": sorted(r.name for r in rows if not r.converted),
    }
    del model, ref, out
    gc.collect()
    return result


def text_encoders(skip: set[str]) -> dict:
    result = {"clip-l (77 tokens)": _encoder_sqnr("flux-dev", "text_encoder", 77)}
    print(result, flush=True)
    if "t5" not in skip:
        result["t5-xxl encoder (512 tokens)"] = _encoder_sqnr("flux-dev", "text_encoder_2", 512)
        print(result, flush=True)
    return result


def vae_decoders() -> dict:
    result = {}
    for pipeline in ("sdxl", "flux-dev"):
        vae = build_full_size_component(pipeline, "vae", "cpu")
        z = torch.randn(1, vae.config.latent_channels, 64, 64, generator=torch.Generator().manual_seed(0)).to(
            torch.bfloat16
        )
        with torch.no_grad():
            ref = vae.decode(z).sample.float()
            rep = analyze(
                vae.decoder,
                (vae.post_quant_conv(z) if vae.post_quant_conv is not None else z,),
                FP8Config(),
                alone=6,
            )
            torch._dynamo.reset()
            # inner="eager": the rewritten graph with fp8pass's ops (the same math as their
            # decomposition); torch's aot_eager fails on this decoder's non-contiguous group_norm
            # input ("Expected X.is_contiguous"), with or without fp8pass, and Inductor takes minutes
            be = FP8Backend(FP8Config(), inner="eager")
            vae.decoder.compile(backend=be)
            out = vae.decode(z).sample.float()
        to01 = lambda x: (x / 2 + 0.5).clamp(0, 1)  # noqa: E731  (the image processor's denormalisation)
        rows = be.report()
        result[f"{pipeline} VAE decoder, 512x512"] = {
            "layers": f"{sum(r.converted for r in rows)}/{len(rows)}",
            "image_psnr_db": round(psnr(to01(ref), to01(out)), 2),
            "image_ssim": round(ssim(to01(ref), to01(out)), 5),
            "decoder_output_sqnr_db": round(sqnr(ref, out), 2),
            "most_sensitive_alone": [
                {"layer": r.name, "alone_sqnr_db": round(r.alone_sqnr, 2)} for r in rep.most_sensitive(6)
            ],
        }
        print(pipeline, result[f"{pipeline} VAE decoder, 512x512"], flush=True)
        del vae
        gc.collect()
    return result


def whole_pipeline_bytes() -> dict:
    result = {}
    for pipeline, components in FULL_SIZE.items():
        per = {}
        for component in components:
            module = build_full_size_component(pipeline, component, "meta")
            kind = component_kind(component, module)
            before = sum(
                p.numel() * p.element_size() for p in {id(p): p for p in module.parameters()}.values()
            )
            inputs = (
                zoo.build_inputs(pipeline, "meta") if kind == "denoiser" and pipeline in zoo.MODELS else None
            )
            after = round(weight_bytes(module, FP8Config(), inputs)["model_ratio"] * before)
            per[component] = {"kind": kind, "bf16_bytes": before, "fp8_bytes": after}
        bf16 = sum(c["bf16_bytes"] for c in per.values())

        def total(kinds: set[str], per=per) -> int:
            return sum(c["fp8_bytes"] if c["kind"] in kinds else c["bf16_bytes"] for c in per.values())

        result[pipeline] = {
            "components": per,
            "bf16_bytes": bf16,
            "denoiser_only_ratio": round(total({"denoiser"}) / bf16, 4),
            "default_ratio": round(
                total({"denoiser", "text_encoder", "image_encoder", "controlnet"}) / bf16, 4
            ),
            "with_vae_ratio": round(
                total({"denoiser", "text_encoder", "image_encoder", "controlnet", "vae"}) / bf16, 4
            ),
        }
        print(pipeline, {k: v for k, v in result[pipeline].items() if k != "components"}, flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--skip", nargs="*", default=[], choices=["tiny", "t5", "text", "vae", "bytes"])
    args = parser.parse_args()
    skip = set(args.skip)
    result = {
        "environment": {
            "date": datetime.date.today().isoformat(),
            "torch": torch.__version__,
            "device": "cpu",
        }
    }
    sections = {
        "bytes": ("whole_pipeline_bytes", whole_pipeline_bytes),
        "tiny": ("tiny_pipelines", tiny_pipelines),
        "vae": ("vae_decoders", vae_decoders),
        "text": ("text_encoders", lambda: text_encoders(skip)),
    }
    for flag, (key, run) in sections.items():
        if flag not in skip:
            result[key] = run()
            if args.json:  # after each section: a later one failing keeps what was measured
                args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
