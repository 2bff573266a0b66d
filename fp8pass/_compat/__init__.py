"""Every reliance of fp8pass on private PyTorch (and C library) behaviour, one module per concern.

Each module names the torch versions it was checked on, and each helper what it relies on. When a
torch upgrade breaks fp8pass, these are the files to read first:

- :mod:`.dynamo`: what Dynamo hands a backend (parameters and their sources, module paths,
  autocast regions, the model on the call stack) and its backend registry;
- :mod:`.graph`: a rewritten copy of Dynamo's graph that AOT autograd accepts;
- :mod:`.inductor`: Inductor / AOT autograd with fp8pass's decompositions, the cache key, and the
  CPU conversion calls Inductor's generated code makes without the dispatcher;
- :mod:`.matmul`: ``torch._scaled_mm`` and the symbolic-shape questions the ops ask;
- :mod:`.storage`: freeing and restoring a parameter's storage, ``.data``, DTensor shards;
- :mod:`.subclass`: torch functions with tensor-subclass handling off (the watched parameters);
- :mod:`.modules`: ``Module._apply`` and the offloading hooks of diffusers / accelerate;
- :mod:`.heap`: glibc's ``malloc_trim``.

Nothing is re-exported here: import from the module that owns the concern.
"""
