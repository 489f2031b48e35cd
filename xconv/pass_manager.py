"""Run passes by name; validate after each; log op-count changes.

``run_passes(graph, ["fold_batchnorm", ...], ctx)`` returns a new graph; the
input graph is never modified.  A failing pass is reported with the pass
that ran before it.  ``fixed_point=True`` repeats the list until the graph
stops changing (bounded).
"""
from __future__ import annotations

import logging
import time
from typing import Sequence

from .errors import InvalidGraphError, XconvError
from .ir import Graph
from .passes import PASSES, PassContext

log = logging.getLogger(__name__)


def _diff(before: dict[str, int], after: dict[str, int]) -> str:
    parts = []
    for op in sorted(set(before) | set(after)):
        d = after.get(op, 0) - before.get(op, 0)
        if d:
            parts.append(f"{op} {d:+d}")
    return ", ".join(parts) or "no change"


def _signature(g: Graph) -> tuple:
    return tuple((n.op, tuple(n.inputs), tuple(n.outputs), repr(sorted(n.attrs.items()))) for n in g.nodes)


def run_passes(graph: Graph, names: Sequence[str], ctx: PassContext | None = None, *,
               fixed_point: bool = False, max_rounds: int = 8) -> Graph:
    ctx = ctx or PassContext()
    unknown = [n for n in names if n not in PASSES]
    if unknown:
        raise XconvError(f"unknown passes {unknown}; known: {sorted(PASSES)}")
    g = graph
    g.validate()
    for round_ in range(max_rounds if fixed_point else 1):
        before_round = _signature(g)
        prev = "<input>"
        for name in names:
            t0 = time.perf_counter()
            counts = g.op_counts()
            try:
                g2 = PASSES[name](g, ctx)
                g2.validate()
            except InvalidGraphError as e:
                raise InvalidGraphError(f"pass '{name}' (after '{prev}') produced an invalid graph: {e}") from e
            log.info("pass %-22s %6.1f ms  %s", name, 1e3 * (time.perf_counter() - t0), _diff(counts, g2.op_counts()))
            g, prev = g2, name
        if not fixed_point or _signature(g) == before_round:
            break
    return g
