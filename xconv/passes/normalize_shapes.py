"""Normalise reductions and reshapes into the forms every backend knows.

* ReduceMean/ReduceMax over (H, W) of an NCHW tensor -> Global*Pool
  (+ Flatten when keepdims is false);
* Reshape (N, C, H, W) -> (N, C*H*W) and Flatten of an already flat tensor
  -> Flatten(axis=1) / removed;
* the channel-shuffle idiom Reshape(N,g,C/g,H,W) -> Transpose(0,2,1,3,4)
  -> Reshape(N,C,H,W) -> ChannelShuffle(g);
* a Transpose that moves only size-1 axes (the other axes keep their order:
  the memory order is unchanged) -> Reshape, unless the target writes that
  Transpose natively within its dialect's rules (``ctx.native("transpose",
  perm=...)``: a Caffe Permute where the dialect has one and takes the order);
* chains of Reshape/Flatten collapse into one.
"""
from __future__ import annotations

from ..ir import Graph, Node
from . import PassContext, Rewriter, register_pass


def _is_flat2(shape_in: tuple[int, ...], shape_out: tuple[int, ...]) -> bool:
    return len(shape_out) == 2 and shape_out[0] == shape_in[0] and len(shape_in) >= 2


@register_pass("normalize_shapes")
def normalize_shapes(graph: Graph, ctx: PassContext) -> Graph:
    g = graph.replace()
    g.infer_types()
    prod = {o: n for n in g.nodes for o in n.outputs}
    cons = g.consumers()
    rw = Rewriter(g)
    skip: set[str] = set()
    for n in rw:
        if n.name in skip:
            continue
        t_in = rw.g.type_of(n.inputs[0]) if n.inputs else None
        if n.op in ("ReduceMean", "ReduceMax") and t_in is not None and t_in.rank == 4 \
                and sorted(a % 4 for a in n.attrs["axes"]) == [2, 3]:
            op = "GlobalAveragePool" if n.op == "ReduceMean" else "GlobalMaxPool"
            if n.attrs["keepdims"]:
                rw.emit(op, [n.inputs[0]], n.loc, n.name, output=n.outputs[0])
            else:
                mid = rw.emit(op, [n.inputs[0]], n.loc, n.name + "_pool")
                rw.emit("Flatten", [mid], n.loc, n.name, output=n.outputs[0], axis=1)
            continue
        if n.op == "Reshape" and t_in is not None:
            shuffle = _match_shuffle(n, rw.g, cons, t_in.shape)
            if shuffle is not None:
                tr, last, grp = shuffle
                skip.update({tr.name, last.name})
                rw.emit("ChannelShuffle", [n.inputs[0]], n.loc, n.name, output=last.outputs[0], group=grp)
                continue
        if n.op == "Transpose" and t_in is not None and _moves_only_size1(t_in.shape, n.attrs["perm"]) \
                and not ctx.native("transpose", perm=tuple(n.attrs["perm"])):
            _reshape_to(rw, n, n.inputs[0], t_in.shape, rw.g.types[n.outputs[0]].shape)
            continue
        if n.op in ("Reshape", "Flatten") and t_in is not None:
            src = n.inputs[0]
            # collapse chains: look through a producing Reshape/Flatten with a single consumer
            p = prod.get(src)
            while p is not None and p.op in ("Reshape", "Flatten") and len(cons.get(src, [])) == 1 \
                    and src not in rw.g.outputs:
                src = p.inputs[0]
                p = prod.get(src)
            _reshape_to(rw, n, src, rw.g.type_of(src).shape, rw.g.types[n.outputs[0]].shape)
            continue
        rw.keep(n)
    out = rw.finish()
    from .remove_identity import remove_identity
    return remove_identity(out, ctx)


def _moves_only_size1(shape: tuple[int, ...], perm: tuple[int, ...]) -> bool:
    """Whether transposing ``shape`` by ``perm`` keeps the non-1 axes in order (a pure reshape)."""
    kept = [p for p in perm if shape[p] != 1]
    return kept == sorted(kept)


def _reshape_to(rw: Rewriter, n: Node, src: str, shape_in: tuple[int, ...], shape_out: tuple[int, ...]) -> None:
    """Node ``n`` (same memory order in and out) as an Identity, Flatten(axis=1) or Reshape of ``src``."""
    if shape_in == shape_out:
        rw.emit("Identity", [src], n.loc, n.name, output=n.outputs[0])
    elif _is_flat2(shape_in, shape_out):
        rw.emit("Flatten", [src], n.loc, n.name, output=n.outputs[0], axis=1)
    else:
        rw.emit("Reshape", [src], n.loc, n.name, output=n.outputs[0], shape=shape_out)


def _match_shuffle(n: Node, g: Graph, cons: dict[str, list[Node]], shape_in: tuple[int, ...]):
    if len(shape_in) != 4:
        return None
    s = n.attrs["shape"]
    N, C, H, W = shape_in
    if len(s) != 5 or s[0] != N or s[3:] != (H, W) or s[1] * s[2] != C:
        return None
    c1 = cons.get(n.outputs[0], [])
    if len(c1) != 1 or c1[0].op != "Transpose" or c1[0].attrs["perm"] != (0, 2, 1, 3, 4):
        return None
    tr = c1[0]
    c2 = cons.get(tr.outputs[0], [])
    if len(c2) != 1 or c2[0].op not in ("Reshape", "Flatten"):
        return None
    last = c2[0]
    if g.types[last.outputs[0]].shape != shape_in or n.outputs[0] in g.outputs or tr.outputs[0] in g.outputs:
        return None
    return tr, last, s[1]
