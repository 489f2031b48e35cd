"""Model statistics as the seed tables report them: parameters and GMACs
(multiply-accumulates of Conv and Gemm) per image.  Parameters are the
trainable ones, as papers count them (BatchNorm running statistics are not)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .ir import Graph


@dataclass
class Stats:
    params: int
    macs_per_image: int
    op_counts: dict[str, int]

    @property
    def gmacs(self) -> float:
        return self.macs_per_image / 1e9


def stats(graph: Graph) -> Stats:
    graph.validate()
    macs = 0
    used: set[str] = set()
    for n in graph.nodes:
        ins = n.inputs[:3] if n.op == "BatchNormalization" else n.inputs  # running stats are buffers
        used.update(i for i in ins if i in graph.params)
        if n.op == "Conv":
            w = graph.type_of(n.inputs[1]).shape
            out = graph.types[n.outputs[0]].shape
            macs += int(np.prod(out[1:], dtype=np.int64)) * int(np.prod(w[1:], dtype=np.int64))
        elif n.op == "Gemm":
            w = graph.type_of(n.inputs[1]).shape
            macs += w[0] * w[1]
    params = sum(int(graph.params[p].size) for p in used)
    return Stats(params, macs, graph.op_counts())
