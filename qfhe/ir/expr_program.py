"""Evaluation of elementwise expression programs (the ``expr`` activation; see
:mod:`qfhe.frontend.expressions`, which builds them).

Examples
--------
>>> import torch
>>> p = [{"fn": "ge", "args": [["x"], ["c", 1.0]]}, {"fn": "where", "args": [["s", 0], ["x"], ["c", 0.0]]}]
>>> evaluate_program(torch.tensor([0.5, 2.0], dtype=torch.float64), p)
tensor([0., 2.], dtype=torch.float64)
"""

from __future__ import annotations

import torch

_BINARY = {
    "gt": torch.gt,
    "lt": torch.lt,
    "ge": torch.ge,
    "le": torch.le,
    "eq": torch.eq,
    "ne": torch.ne,
    "and": torch.logical_and,
    "or": torch.logical_or,
    "xor": torch.logical_xor,
    "add": torch.add,
    "sub": torch.sub,
    "mul": torch.mul,
    "div": torch.div,
}


def evaluate_program(x: torch.Tensor, program: list[dict]) -> torch.Tensor:
    """Run an expression program on float64 values (the reference semantics of ``expr``).

    Examples
    --------
    >>> p = [{"fn": "gt", "args": [["x"], ["c", 0.0]]}, {"fn": "float", "args": [["s", 0]]}]
    >>> evaluate_program(torch.tensor([-1.0, 2.0], dtype=torch.float64), p)
    tensor([0., 1.], dtype=torch.float64)
    """
    from qfhe.ir.activations import apply_activation

    results: list[torch.Tensor] = []

    def arg(a):
        if a[0] == "x":
            return x
        if a[0] == "s":
            return results[a[1]]
        return torch.tensor(a[1], dtype=torch.float64)

    for step in program:
        fn, args = step["fn"], [arg(a) for a in step["args"]]
        if fn in _BINARY:
            out = _BINARY[fn](*args)
        elif fn == "where":
            out = torch.where(args[0].bool(), args[1].double(), args[2].double())
        elif fn == "not":
            out = torch.logical_not(args[0])
        elif fn == "float":
            out = args[0].double()
        elif fn == "trunc":
            out = torch.trunc(args[0].double())
        elif fn == "bool":
            out = args[0].bool()
        elif fn == "full":
            out = torch.full_like(x, step["value"])
        elif fn == "identity":
            out = args[0]
        elif fn == "affine":
            out = args[0] * step["scale"] + step["shift"]
        elif fn == "program":
            out = evaluate_program(args[0], step["program"])
        elif fn == "act":
            out = torch.as_tensor(apply_activation(step["act"], step["params"], args[0].double().numpy()))
        else:  # pragma: no cover - programs are built by qfhe.frontend.expressions
            raise ValueError(f"unknown expression step {fn!r}")
        results.append(torch.broadcast_to(out, x.shape) if out.shape != x.shape else out)
    return results[-1].double()
