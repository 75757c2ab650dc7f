"""ONNX models as torch.fx modules, so that they go through qfhe's one torch frontend.

:func:`onnx_to_torch` rebuilds an ONNX graph (standard ``ai.onnx`` domain) as a
``torch.fx.GraphModule`` of the torch modules and functions it stands for (``Gemm`` becomes an
``nn.Linear``, ``Conv`` an ``nn.Conv2d``, ``Relu`` ``torch.relu``...), and
:func:`qfhe.compile_onnx_model` compiles that module with :func:`qfhe.compile_torch_model`. The
torch exporter's graph thus compiles to the same circuit as the torch model it came from.

Why not onnx2torch, which the issue suggested: it imports torchvision at import time, and the only
torchvision wheel on PyPI for torch 2.13 links CUDA (its operators do not load on the CPU build
qfhe pins). The conversion below covers the operators of the opset the torch exporter writes for
the layers qfhe supports; an operator it does not take is an :class:`UnsupportedOpError` naming
the ONNX node. Values the graph computes from shapes must be constants: export with a fixed batch
size (the default of ``torch.onnx.export``) so the exporter folds them.

Examples
--------
>>> import io, torch
>>> m = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
>>> f = io.BytesIO(); torch.onnx.export(m, torch.zeros(1, 3), f, dynamo=False)
>>> gm = onnx_to_torch(f.getvalue())
>>> x = torch.randn(5, 3)
>>> bool(torch.allclose(gm(x), m(x), atol=1e-6))
True
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import fx, nn

from qfhe.errors import ConfigurationError, UnsupportedOpError
from qfhe.frontend.onnx_ops import BINARY, REDUCE, UNARY, _OnnxOps

#: Largest ONNX file read (bytes): a model file is user input; this bounds what a mistake can cost
MAX_ONNX_BYTES = 2 << 30


def _load(model):
    import onnx

    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(model, (bytes, bytearray)):
        data = bytes(model)
    elif isinstance(model, (str, Path)):
        path = Path(model)
        if not path.is_file():
            raise ConfigurationError(f"compile_onnx_model: model: no ONNX file at '{path}'")
        if path.stat().st_size > MAX_ONNX_BYTES:
            raise ConfigurationError(f"compile_onnx_model: model: '{path}' is larger than {MAX_ONNX_BYTES} bytes")
        data = path.read_bytes()
    else:
        raise ConfigurationError(
            "compile_onnx_model: model must be an onnx.ModelProto, the bytes of one, or a path "
            f"to an .onnx file, got {type(model).__name__}"
        )
    try:
        return onnx.load_from_string(data)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ConfigurationError(
            f"compile_onnx_model: model: not an ONNX model ({type(exc).__name__}: {str(exc)[:200]})"
        ) from None


class _Tracer(fx.Tracer):
    """Records torch calls on proxies into one graph; tensor constants become attributes of ``root``."""

    def __init__(self, root: nn.Module):
        super().__init__()
        self.root, self.graph, self.tensor_attrs = root, fx.Graph(), {}


class _Converter(_OnnxOps):
    """Walks the ONNX graph once; each value is a Proxy (depends on the input) or a constant tensor."""

    def __init__(self, proto):
        import onnx
        from onnx import numpy_helper

        self.onnx, self.numpy_helper = onnx, numpy_helper
        self.proto = proto
        try:
            proto = onnx.shape_inference.infer_shapes(proto)
        except Exception:  # shapes are a help (ranks, Reshape's 0), not a requirement
            pass
        self.shapes = {}
        for v in list(proto.graph.value_info) + list(proto.graph.input) + list(proto.graph.output):
            dims = v.type.tensor_type.shape.dim
            if v.type.tensor_type.HasField("shape"):
                self.shapes[v.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
        self.users: dict[str, int] = {}
        for n in proto.graph.node:
            for i in n.input:
                self.users[i] = self.users.get(i, 0) + 1
        self.bias_free: dict[str, nn.Linear] = {}  # MatMul outputs made nn.Linear without a bias yet
        self.root = nn.Module()
        self.tracer = _Tracer(self.root)
        self.env: dict[str, object] = {}
        self._modules = 0

    # -- values ----------------------------------------------------------------------------------
    def const(self, node, name: str, what: str) -> torch.Tensor:
        v = self.env.get(name)
        if not isinstance(v, torch.Tensor):
            raise UnsupportedOpError(
                f"ONNX node '{node.name}' ({node.op_type}): its {what} must be a constant; "
                "export with a fixed batch size so the exporter folds it"
            )
        return v

    def ints(self, node, i: int, attr: str, what: str):
        """A list of ints given as input ``i`` (newer opsets) or as attribute ``attr`` (older)."""
        if len(node.input) > i and node.input[i]:
            return [int(v) for v in self.const(node, node.input[i], what).reshape(-1).tolist()]
        return self.attrs(node).get(attr)

    def attrs(self, node) -> dict:
        return {a.name: self.onnx.helper.get_attribute_value(a) for a in node.attribute}

    def module(self, node, mod: nn.Module, x):
        """Call ``mod`` on ``x``: a graph node if ``x`` is a proxy, else computed now."""
        if isinstance(x, torch.Tensor):
            with torch.no_grad():
                return mod.eval()(x)
        name = "".join(c if c.isalnum() else "_" for c in (node.name or node.op_type)).strip("_") or "layer"
        name = f"{name}_{self._modules}" if hasattr(self.root, name) else name
        self._modules += 1
        self.root.add_module(name, mod.eval())
        return fx.Proxy(self.tracer.create_node("call_module", name, (x.node,), {}), self.tracer)

    def rank(self, name: str) -> int | None:
        shape = self.shapes.get(name)
        return None if shape is None else len(shape)

    # -- the graph -------------------------------------------------------------------------------
    def run(self) -> fx.GraphModule:
        graph = self.proto.graph
        for init in graph.initializer:
            self.env[init.name] = torch.from_numpy(np.array(self.numpy_helper.to_array(init)))
        inputs = [i for i in graph.input if i.name not in self.env]
        for i in inputs:
            name = "".join(c if c.isalnum() else "_" for c in i.name).strip("_") or "x"
            self.env[i.name] = fx.Proxy(self.tracer.create_node("placeholder", f"in_{name}", (), {}), self.tracer)
        for node in graph.node:
            if node.domain not in ("", "ai.onnx"):
                raise UnsupportedOpError(
                    f"ONNX node '{node.name}' is in domain '{node.domain}' ({node.op_type}); "
                    "qfhe reads the standard ai.onnx operators only"
                )
            handler = getattr(self, f"op_{node.op_type}", None)
            if handler is None and node.op_type in UNARY:
                outs = [UNARY[node.op_type](self.env[node.input[0]])]
            elif handler is None and node.op_type in BINARY:
                outs = [BINARY[node.op_type](self.env[node.input[0]], self.env[node.input[1]])]
            elif handler is None and node.op_type in REDUCE:
                outs = [self.reduce(node)]
            elif handler is None:
                raise UnsupportedOpError(
                    f"ONNX node '{node.name}' ({node.op_type}) has no torch equivalent qfhe "
                    "compiles; see the table of supported operations (docs/operations.md)"
                )
            else:
                outs = handler(node, [self.env.get(i) if i else None for i in node.input])
            for name, value in zip(node.output, outs):
                self.env[name] = value
        results = [self.env[o.name] for o in graph.output]
        for r, o in zip(results, graph.output):
            if not isinstance(r, fx.Proxy):
                raise UnsupportedOpError(f"ONNX output '{o.name}' does not depend on the model's inputs")
        out = results[0] if len(results) == 1 else tuple(results)
        self.tracer.create_node("output", "output", (self.tracer.create_arg(out),), {})
        return fx.GraphModule(self.root, self.tracer.graph, "OnnxModel")


def onnx_to_torch(model) -> fx.GraphModule:
    """An ONNX model as a ``torch.fx.GraphModule`` of the torch modules and functions it stands for.

    Parameters
    ----------
    model : onnx.ModelProto, bytes or path
        The ONNX model (standard ``ai.onnx`` operators).

    Returns
    -------
    torch.fx.GraphModule
        Inputs in the ONNX graph's order (its initializers excluded), float32 weights.

    Raises
    ------
    ConfigurationError
        For something that is not an ONNX model.
    UnsupportedOpError
        Naming the first ONNX node qfhe cannot take.

    Examples
    --------
    >>> onnx_to_torch(b"not a model")
    Traceback (most recent call last):
    ...
    qfhe.errors.ConfigurationError: compile_onnx_model: model: not an ONNX model (DecodeError: ...)
    """
    return _Converter(_load(model)).run()
