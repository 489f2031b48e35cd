"""Regenerate golden/zoo/*.npz: inputs and logits computed by PyTorch itself.

Run: .venv/bin/python scripts/make_golden.py [model ...]
The converted models are never involved: golden values come only from the
source framework.  Tolerances live in golden/zoo.json (edited by hand, with
the measured figures that justify them).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))


def main(names: list[str]) -> None:
    import torch

    import zoo
    out = ROOT / "golden" / "zoo"
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    for name in names or list(zoo.ZOO):
        model = zoo.build(name)
        x = zoo.torchvision_inputs(zoo.ZOO[name])
        with torch.no_grad():
            y = model(torch.from_numpy(x)).numpy()
        np.savez_compressed(out / f"{name}.npz", x=x, logits=y, photos=np.array(zoo.PHOTOS),
                            torch_version=np.array(torch.__version__))
        print(f"{name}: logits {y.shape}, argmax {y.argmax(1).tolist()}, spread {y.std():.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
