"""Data, augmentation, training, metrics, ONNX export, timing, result records and the bench runner."""

from benchmark.machine import separate_inductor_cache

# before anything compiles: a capped process (ONEDNN_MAX_CPU_ISA=...) must not share torch.compile's cache with
# uncapped ones (see separate_inductor_cache)
separate_inductor_cache()
