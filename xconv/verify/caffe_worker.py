"""Run a Caffe net in a child process and serve forward passes over a pipe.

Why a child process: pycaffe crashes when TensorFlow was imported into the
process before it (both bring their own protobuf/glog), and a Caffe CHECK
failure aborts the whole process.  In a child, neither can take xconv down:
a dead worker becomes an XconvError with Caffe's last words.

Protocol (stdin/stdout of the child, our own processes only): one JSON line
per request ``{"names": [...], "shape": [...]}`` followed by the input as
raw float32 bytes; the reply is a JSON line ``{"ok": true, "arrays":
[[name, shape], ...]}`` followed by each array's float32 bytes, or
``{"ok": false, "error": "..."}``.  No pickle anywhere.
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np


def _read_exact(f, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = f.read(n - len(buf))
        if not chunk:
            raise EOFError("pipe closed")
        buf += chunk
    return bytes(buf)


def serve(prototxt: str, caffemodel: str) -> int:
    os.environ.setdefault("GLOG_minloglevel", "2")
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    import caffe  # noqa: PLC0415
    caffe.set_mode_cpu()
    net = caffe.Net(prototxt, caffe.TEST, weights=caffemodel)
    in_name = net.inputs[0]
    out.write((json.dumps({"ok": True, "input": in_name, "outputs": list(net.outputs),
                           "blobs": list(net.blobs.keys())}) + "\n").encode())
    out.flush()
    while True:
        line = inp.readline()
        if not line:
            return 0
        req = json.loads(line)
        shape = tuple(req["shape"])
        x = np.frombuffer(_read_exact(inp, int(np.prod(shape)) * 4), dtype="<f4").reshape(shape)
        try:
            blob = net.blobs[in_name]
            if tuple(blob.data.shape) != shape:
                blob.reshape(*shape)
                net.reshape()
            blob.data[...] = x
            net.forward()
            arrays = [(n, np.ascontiguousarray(net.blobs[n].data, dtype="<f4")) for n in req["names"]
                      if n in net.blobs]
        except Exception as e:  # noqa: BLE001 - reported to the parent
            out.write((json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}) + "\n").encode())
            out.flush()
            continue
        out.write((json.dumps({"ok": True, "arrays": [[n, list(a.shape)] for n, a in arrays]}) + "\n").encode())
        for _, a in arrays:
            out.write(a.tobytes())
        out.flush()


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1], sys.argv[2]))
