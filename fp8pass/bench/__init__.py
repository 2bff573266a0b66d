"""The harness around the library: what ``python -m fp8pass bench / layers / report / sweep`` run.

- :mod:`.zoo`: diffusers denoisers from their published configs, random weights with
  checkpoint-like statistics, inputs at real shapes (:data:`.zoo.DEFAULT_MODELS`: what the main
  job runs per device).
- :mod:`.variants`: every way of running one denoiser, timed (``python -m fp8pass bench``).
- :mod:`.layers`: bf16 vs FP8 at a model's real layer shapes (``python -m fp8pass layers``).
- :mod:`.catalogue` and :mod:`.sweep`: a small config of every diffusers denoiser class, run
  through fp8pass (``python -m fp8pass sweep``).
- :mod:`.pipelines`, :mod:`.pipeline_bench`, :mod:`.offline_tokenizers`: six whole tiny pipelines
  with real text encoders, built offline (tokenizers over tiny in-memory vocabularies: no model hub).
- :mod:`.parallel`: the tensor / context parallel harness; :mod:`.lora`: LoRA hot-swapping.
- :mod:`.commands`: the subcommands' arguments and bodies, imported by :mod:`fp8pass.cli` when
  one runs.

It ships in the wheel (the main job needs it on a user's machine), but nothing in the library
imports from here, and the compile cache key does not cover it.
"""
