"""The table of supported PyTorch operations, generated from the frontend's own vocabulary.

Each row names the torch spellings the frontend maps (read from the same sets and registries the
frontend uses), the IR op they become, and whether the TFHE path (post-training quantization and
Brevitas QAT) and the CKKS path compile it; the CKKS column is read from what
:func:`qfhe.ckks.lower.to_he_graph` lowers. The docs' table (docs/operations.md) is this module's output, rendered
when the docs are built, so the two cannot differ; ``python -m qfhe.frontend.coverage`` prints it.

Examples
--------
>>> rows = operation_table()
>>> next(r for r in rows if r["ir"] == "maxpool")["ckks"]
'no'
"""

from __future__ import annotations

import operator

import torch
from torch import nn

from qfhe.frontend import expressions, pooling, products, reductions, shape_ops, torch_ops
from qfhe.frontend.lowering import activation_forms
from qfhe.ir.activations import ACTIVATIONS

_SYMBOLS = {
    "getitem": "x[...]",
    "setitem": "x[mask] = v",
    "matmul": "@",
    "gt": ">",
    "lt": "<",
    "ge": ">=",
    "le": "<=",
    "eq": "==",
    "ne": "!=",
    "and_": "&",
    "or_": "|",
    "xor": "^",
    "invert": "~",
    "neg": "-x",
    "abs": "abs(x)",
    "pow": "x ** c",
}


def _name(obj) -> str:
    """How a user writes ``obj``: ``nn.ReLU``, ``F.relu``, ``torch.relu``, ``.relu()``, ``>``."""
    if isinstance(obj, str):
        return obj if obj.startswith("__") else f".{obj}()"
    if isinstance(obj, type):
        return f"nn.{obj.__name__}"
    for prefix, namespace in (("F.", torch.nn.functional), ("torch.", torch), ("torch.special.", torch.special)):
        names = [k for k, v in vars(namespace).items() if v is obj and not k.startswith("_")]
        if names:
            return prefix + min(names, key=len)
    names = [k for k, v in vars(operator).items() if v is obj and not k.startswith("_")]
    if names:
        return _SYMBOLS.get(min(names, key=len), min(names, key=len))
    return obj.__name__


def _names(objs) -> str:
    names = sorted(
        {
            _name(o)
            for o in objs
            if not (isinstance(o, str) and o.endswith("_") and not o.startswith("__"))
            and not (_name(o).endswith("_") or _name(o).endswith("_()"))
        }
    )
    return ", ".join(f"`{n}`" for n in names)


def _activation_rows() -> list[tuple]:
    forms = activation_forms()
    rows = []
    for act in ACTIVATIONS.values():
        if act.name == "expr":
            continue
        spellings = [m for m, a in forms.modules.items() if a is act] + [
            f for f, a in forms.functions.items() if a is act and not _private(f)
        ]
        spellings += [m for m, a in forms.methods.items() if a is act]
        if act.name == "prelu":
            spellings = [nn.PReLU, torch.nn.functional.prelu]
        label = _names(spellings) + (f" ({', '.join(act.params)})" if act.params and act.name != "prelu" else "")
        rows.append((label, "activation", act.name))
    return rows


def _private(f) -> bool:
    """qfhe's own wrappers (the eval-mode RReLU), which users never write."""
    return getattr(f, "__module__", "").startswith("qfhe.")


def _rows() -> list[tuple]:
    """(torch spellings, IR op, activation fn or None) for every supported family."""
    return [
        (_names([nn.Linear]) + ", `x @ W` (constant `W`)", "gemm", None),
        (_names([nn.Conv1d, nn.Conv2d]) + " (zero padding, stride, dilation, groups)", "conv", None),
        (_names([nn.BatchNorm1d, nn.BatchNorm2d]) + " (folded into the layer before)", "affine", None),
        (_names(torch_ops.IDENTITY_MODULES) + ", " + _names(torch_ops.ALIAS_METHODS), "(none)", None),
        (
            _names(
                [m for m in pooling.POOL_MODULES if "Max" not in m.__name__]
                + [f for f, (kind, _) in pooling.FUNCTION_ARGS.items() if kind != "max"]
            )
            + " (uneven adaptive windows as a matrix)",
            "conv",
            None,
        ),
        (
            _names(
                [m for m in pooling.POOL_MODULES if "Max" in m.__name__]
                + [f for f, (kind, _) in pooling.FUNCTION_ARGS.items() if kind == "max" and "indices" not in f.__name__]
            ),
            "maxpool",
            None,
        ),
        (
            "`+ - * /` with a number or a stored tensor (buffers, parameters, constant expressions: folded)",
            "affine",
            None,
        ),
        ("`x + y`, `x - y` of two encrypted tensors", "add", None),
        (
            "`x * y`, " + _names(products.MATMUL) + " of two encrypted tensors (concrete's encrypted product)",
            "matmul",
            None,
        ),
        (_names(shape_ops.RESHAPE_METHODS | shape_ops.RESHAPE_FUNCS), "reshape", None),
        (
            _names(shape_ops.GATHER_METHODS | shape_ops.GATHER_FUNCS - {torch.nn.functional.pad}) + ", `x.T`",
            "gather",
            None,
        ),
        (_names([torch.nn.functional.pad]) + " (mode='constant')", "gather", None),
        (_names(shape_ops.CAT | shape_ops.STACK), "concat", None),
        (
            _names(
                [k for k, lin in reductions.REDUCTIONS.items() if lin]
                + [f for f, k in reductions._FUNCTIONS.items() if reductions.REDUCTIONS[k]]
            )
            + " over sample axes (`dim=`, `keepdim=`): a row of ones (or 1/k)",
            "gemm",
            "reduction",
        ),
        (
            _names(
                [k for k, lin in reductions.REDUCTIONS.items() if not lin]
                + [f for f, k in reductions._FUNCTIONS.items() if not reductions.REDUCTIONS[k]]
            )
            + " over sample axes: a max (min) pooling",
            "maxpool",
            None,
        ),
        (
            _names([k for k in expressions._OPS]) + ", and sums and products of such masks of ONE tensor: one table "
            "lookup",
            "activation",
            "expr",
        ),
        ("several inputs: `forward(x, y)` with `inputset=(X1, X2)`", "input", None),
    ] + _activation_rows()


def operation_table() -> list[dict]:
    """One dict per supported operation family: ``torch``, ``ir``, ``ptq``, ``qat``, ``ckks``.

    Examples
    --------
    >>> sorted(operation_table()[0])
    ['ckks', 'ir', 'ptq', 'qat', 'torch']
    """
    from qfhe.ckks.lower import LOWERED_OPS, UNLOWERED_ACTIVATIONS
    from qfhe.passes.quantize import QUANTIZED_OPS

    out = []
    for torch_names, ir, fn in _rows():
        tfhe = "yes" if ir in QUANTIZED_OPS or ir == "(none)" else "no"
        if ir == "input" or fn == "reduction":  # CKKS packs one input vector, and multiplies vectors only
            ckks = "no"
        else:
            ckks = "yes" if (ir in LOWERED_OPS or ir == "(none)") and fn not in UNLOWERED_ACTIVATIONS else "no"
        if fn == "prelu":
            ckks = "one slope"  # a per-channel slope needs one polynomial per channel
        out.append({"torch": torch_names, "ir": ir, "ptq": tfhe, "qat": tfhe, "ckks": ckks})
    return out


def markdown_table() -> str:
    """The table of supported operations (docs/operations.md renders it when the docs are built).

    Examples
    --------
    >>> markdown_table().splitlines()[0]
    '| PyTorch | IR op | TFHE (PTQ) | TFHE (Brevitas QAT) | CKKS |'
    """
    lines = ["| PyTorch | IR op | TFHE (PTQ) | TFHE (Brevitas QAT) | CKKS |", "|---|---|---|---|---|"]
    for r in operation_table():
        lines.append(f"| {r['torch']} | `{r['ir']}` | {r['ptq']} | {r['qat']} | {r['ckks']} |")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    print(markdown_table())
