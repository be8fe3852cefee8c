"""A sharded checkpoint in the Hugging Face layout, for the tests of the executors:
numbered ``.safetensors`` shards and the ``model.safetensors.index.json`` that maps every
tensor to its shard."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file


def write_sharded(root: Path, shards: list[dict[str, np.ndarray]]) -> tuple[list[Path], Path]:
    """Write one shard per dict and the index; (shard paths, index path)."""
    paths = []
    for i, tensors in enumerate(shards):
        paths.append(root / f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors")
        save_file(tensors, paths[-1])
    index = root / "model.safetensors.index.json"
    weight_map = {name: path.name for path, tensors in zip(paths, shards) for name in tensors}
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return paths, index
