"""The developer's side: turn a compiled model into the client and server artifacts.

What each side receives:

* ``client.zip``: the input quantizer and output dequantizer (plain data), the client-side
  standardisation and post-processing of an estimator, and the parameters for key generation
  (concrete's client specs, or the CKKS parameters and the packing of the inputs and outputs).
  No weights.
* ``server.zip``: the circuit (TFHE: MLIR text and compile options; CKKS: the HE op graph with its
  plaintext diagonals, and the parameters). No key.

Examples
--------
>>> import numpy as np, torch, qfhe, tempfile
>>> X = np.random.RandomState(0).randn(50, 3)
>>> qm = qfhe.compile_torch_model(torch.nn.Linear(3, 2), X, n_bits=3, p_error=0.01)
>>> paths = FHEModelDev(tempfile.mkdtemp(), qm).save()
>>> sorted(p.name for p in paths.values())
['client.zip', 'server.zip']
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from qfhe.deploy.artifacts import ARTIFACT_FILES, build_members, write_artifact
from qfhe.deploy.processing import plain_classes
from qfhe.errors import ArtifactError, ConfigurationError, NotCompiledError


def _fingerprint(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(hashlib.sha256(p).digest())
    return h.hexdigest()


def _unwrap(model) -> tuple:
    """(compiled model, preprocessing, postprocessing) of a QuantizedModule, an estimator or a CKKS model."""
    from qfhe.ckks.compiler import CompiledCKKSModel
    from qfhe.model import QuantizedModule

    if isinstance(model, (QuantizedModule, CompiledCKKSModel)):
        return model, None, {"kind": "none"}
    if hasattr(model, "_client_postprocessing") and hasattr(model, "quantized_module_"):
        post = dict(model._client_postprocessing())
        if "classes" in post:
            post["classes"] = plain_classes(post["classes"])
        pre = {"kind": "standardize", "mean": np.asarray(model.scaler_.mean_, np.float64),
               "scale": np.asarray(model.scaler_.scale_, np.float64)}
        return model.quantized_module_, pre, post
    if hasattr(model, "_client_postprocessing"):
        raise NotCompiledError(f"this {type(model).__name__} is not fitted: call fit(X, y) and compile(X) before "
                               "FHEModelDev(...).save()")
    raise ConfigurationError(
        f"FHEModelDev needs a compiled model: a QuantizedModule (compile_torch_model, compile_brevitas_qat_model), a "
        f"fitted and compiled qfhe.sklearn estimator, or a CKKS model (scheme='ckks'); got {type(model).__name__}")


def _tfhe_docs(qm, pre, post, compress: bool) -> tuple[dict, dict]:
    from qfhe.deploy.tfhe import compile_options, make_server, server_parameters

    if not qm.is_compiled:
        raise NotCompiledError("the model is quantized but not compiled: call compile() (estimators: compile(X)) "
                               "before FHEModelDev(...).save()")
    if len(qm._input_nodes) > 1:
        raise ConfigurationError(
            f"this model has {len(qm._input_nodes)} circuit inputs (several model inputs, or one Brevitas input with "
            "two quantizers); deployment artifacts support one input for now: run it with qm.forward(..., "
            "fhe='execute'), or concatenate the inputs into one tensor and split it inside forward")
    circuit = qm.fhe_circuit
    mlir = circuit.mlir
    options = compile_options(circuit.configuration, compress)
    server = make_server(mlir, options)  # the server recompiles exactly this: take the client specs from it
    fingerprint = _fingerprint(mlir.encode(), json.dumps(options, sort_keys=True).encode())
    why = ("the model's input quantizer clips them too (Brevitas does the same)" if qm.settings.get("qat")
           else "calibrate on data that covers them")
    common = {"scheme": "tfhe", "fingerprint": fingerprint, "input_shape": list(qm.input_shape),
              "output_shape": list(qm.output_shape)}
    client = {**common, "quant": qm._input_node.attrs, "dequant": qm._output_node.attrs, "clip_remedy": why,
              "preprocess": pre, "postprocess": post}
    stats = qm.statistics
    server_doc = {**common, "parameters": server_parameters(server),
                  "statistics": {k: stats[k] for k in ("pbs_count", "max_bit_width", "p_error", "global_p_error")}}
    client_members = {**build_members(client, "client model"), "client.specs.json": server.client_specs.serialize()}
    server_members = {**build_members(server_doc, "server model"), "circuit.mlir": mlir.encode("utf-8"),
                      "compile_options.json": json.dumps(options, indent=1).encode()}
    return client_members, server_members


def _ckks_docs(cm) -> tuple[dict, dict]:
    from qfhe.ckks.backends.seal import SEALBackend, rotation_steps
    from qfhe.ir.graph import Graph, Node

    SEALBackend().check(cm.graph, cm.params)  # no bootstrap nodes, 128-bit secure unless allow_insecure
    params = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cm.params).items()}
    graph = graph_to_plain(cm.graph)
    graph_members = build_members(graph, "graph")
    fingerprint = _fingerprint(json.dumps(params, sort_keys=True).encode(),
                               *[graph_members[k] for k in sorted(graph_members)])
    encrypts = [n for n in cm.graph.nodes if n.op == "encrypt"]
    # The client needs the packing of inputs and outputs, not the weights: keep only those nodes.
    client_graph = Graph(encrypts + [Node(o, "decrypt", [encrypts[0].name], cm.graph[o].attrs)
                                     for o in cm.graph.outputs], cm.graph.outputs)
    common = {"scheme": "ckks", "fingerprint": fingerprint, "input_shape": list(cm.input_shape),
              "output_shape": [cm.output_size], "params": params,
              "samples_per_ciphertext": cm.samples_per_ciphertext}
    client = {**common, "graph": graph_to_plain(client_graph), "steps": rotation_steps(cm.graph),
              "preprocess": None, "postprocess": {"kind": "none"}}
    server_doc = {**common, "graph": graph}
    return build_members(client, "client model"), build_members(server_doc, "server model")


def graph_to_plain(graph) -> dict:
    """A :class:`qfhe.ir.Graph` as plain data (see :func:`graph_from_plain`).

    Examples
    --------
    >>> from qfhe.ir import Graph, Node
    >>> graph_to_plain(Graph([Node("x", "input", [], {"shape": (2,)})], ["x"]))["outputs"]
    ['x']
    """
    return {"nodes": [{"name": n.name, "op": n.op, "inputs": list(n.inputs), "attrs": n.attrs} for n in graph.nodes],
            "outputs": list(graph.outputs)}


def graph_from_plain(data: dict):
    """Rebuild a graph written by :func:`graph_to_plain` (after decoding its arrays).

    Examples
    --------
    >>> from qfhe.ir import Graph, Node
    >>> g = graph_from_plain(graph_to_plain(Graph([Node("x", "input", [], {"shape": (2,)})], ["x"])))
    >>> g["x"].attrs
    {'shape': (2,)}
    """
    from qfhe.ir.graph import Graph, Node

    try:
        return Graph([Node(n["name"], n["op"], list(n["inputs"]), dict(n["attrs"])) for n in data["nodes"]],
                     list(data["outputs"]))
    except (KeyError, TypeError) as exc:
        raise ArtifactError(f"model.json: malformed graph ({type(exc).__name__}: {exc})") from None


class FHEModelDev:
    """Save a compiled model as a client artifact and a server artifact.

    Parameters
    ----------
    path : str or Path
        Directory to write ``client.zip`` and ``server.zip`` into (created if missing).
    model : QuantizedModule, qfhe.sklearn estimator, or CompiledCKKSModel
        Compiled. Estimators must be fitted and compiled.
    compress : bool
        TFHE: compile the deployed circuit with concrete's compressed evaluation keys and input
        ciphertexts (same crypto-parameters, much smaller uploads).

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> from qfhe.sklearn import LogisticRegression
    >>> X = np.random.RandomState(0).randn(60, 3); y = (X[:, 0] > 0).astype(int)
    >>> clf = LogisticRegression(n_bits=4).fit(X, y).compile(X, p_error=0.01)
    >>> FHEModelDev(tempfile.mkdtemp(), clf).save()["client"].name
    'client.zip'
    """

    def __init__(self, path, model, compress: bool = True):
        self.path = Path(path)
        self.model = model
        self.compress = bool(compress)

    def save(self) -> dict:
        """Write both artifacts; returns ``{"client": path, "server": path}``.

        Raises
        ------
        NotCompiledError
            For a model that is not compiled yet.
        ConfigurationError
            For another kind of object, or a CKKS model with bootstrapping or insecure parameters.
        ArtifactError
            For a value that is not plain data.

        Examples
        --------
        >>> import numpy as np, torch, qfhe, tempfile
        >>> qm = qfhe.quantize_torch_model(torch.nn.Linear(3, 2), np.random.randn(40, 3), n_bits=3)
        >>> FHEModelDev(tempfile.mkdtemp(), qm).save()
        Traceback (most recent call last):
        ...
        qfhe.errors.NotCompiledError: the model is quantized but not compiled: ...
        """
        from qfhe.ckks.compiler import CompiledCKKSModel

        model, pre, post = _unwrap(self.model)
        if isinstance(model, CompiledCKKSModel):
            client, server = _ckks_docs(model)
            scheme = "ckks"
        else:
            client, server = _tfhe_docs(model, pre, post, self.compress)
            scheme = "tfhe"
        info = {"scheme": scheme, "model_type": type(self.model).__name__}
        return {kind: write_artifact(self.path / ARTIFACT_FILES[kind], kind, members, info)
                for kind, members in (("client", client), ("server", server))}
