"""The developer's side: turn a compiled model into the client and server artifacts.

What each side receives:

* ``client.zip``: the input quantizer and the output dequantizer (plain data; the dequantizer
  adds the last layer's bias, one vector, in the clear), the client-side standardisation and
  post-processing of an estimator, and concrete's client specs (key parameters, JSON), or the
  CKKS parameters and the packing of the inputs and outputs. No other weight.
* ``server.zip``: the circuit as data. TFHE: the circuit graph qfhe lowered (integer weights,
  materialized lookup tables, roundings), its bit-widths, the bounds every traced value was typed
  from, the compile options, and the client specs the rebuilt circuit must reproduce. CKKS: the
  HE op graph with its plaintext diagonals, and the parameters. No key.

``signing_key`` signs both manifests (Ed25519); servers and clients can then require the
signature (``verify_key``).

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

from qfhe.deploy.artifacts import ARTIFACT_FILES, Artifact, build_members, write_artifact
from qfhe.deploy.processing import plain_classes
from qfhe.deploy.signing import private_key
from qfhe.errors import ArtifactError, ConfigurationError, NotCompiledError


def fingerprint(members: dict) -> str:
    """The model's fingerprint: SHA-256 over the name and digest of every member that defines the
    circuit (a server recomputes it from what it loaded).

    Examples
    --------
    >>> fingerprint({"circuit.json": b"{}", "model.json": b"ignored"}) == fingerprint({"circuit.json": b"{}"})
    True
    """
    h = hashlib.sha256()
    for name in sorted(members):
        if name.split("/")[0].split(".")[0] in ("circuit", "graph", "params") or name == "client.specs.json":
            h.update(name.encode() + b"\0" + hashlib.sha256(members[name]).digest())
    return h.hexdigest()


def _unwrap(model) -> tuple:
    """(compiled model, preprocessing, postprocessing) of a QuantizedModule, an estimator or a CKKS model."""
    from qfhe.ckks.compiler import CompiledCKKSModel
    from qfhe.model import QuantizedModule

    if isinstance(model, CompiledCKKSModel):
        return model, None, {"kind": "none"}
    if isinstance(model, QuantizedModule):
        return model, model.preprocess[0], {"kind": "none"}
    if hasattr(model, "_client_postprocessing") and hasattr(model, "quantized_module_"):
        post = dict(model._client_postprocessing())
        if "classes" in post:
            post["classes"] = plain_classes(post["classes"])
        return model.quantized_module_, model.quantized_module_.preprocess[0], post
    if hasattr(model, "_client_postprocessing"):
        raise NotCompiledError(
            f"this {type(model).__name__} is not fitted: call fit(X, y) and compile(X) before FHEModelDev(...).save()"
        )
    raise ConfigurationError(
        f"FHEModelDev needs a compiled model: a QuantizedModule (compile_torch_model, compile_brevitas_qat_model), a "
        f"fitted and compiled qfhe.sklearn estimator, or a CKKS model (scheme='ckks'); got {type(model).__name__}"
    )


def _tfhe_docs(qm, pre, post, compress: bool) -> tuple[dict, dict]:
    from qfhe.deploy.tfhe import build_circuit, circuit_doc

    if not qm.is_compiled:
        raise NotCompiledError(
            "the model is quantized but not compiled: call compile() (estimators: compile(X)) "
            "before FHEModelDev(...).save()"
        )
    if len(qm._input_nodes) > 1:
        raise ConfigurationError(
            f"this model has {len(qm._input_nodes)} circuit inputs (several model inputs, or one Brevitas input with "
            "two quantizers); deployment artifacts support one input for now: run it with qm.forward(..., "
            "fhe='execute'), or concatenate the inputs into one tensor and split it inside forward"
        )
    doc = circuit_doc(qm, compress)
    circuit_members = build_members(doc, "circuit", "circuit.json", "circuit/")
    # The server will build exactly this: the client's key parameters come from the same build.
    specs = build_circuit(
        Artifact({"kind": "server"}, circuit_members).plain("circuit.json", "circuit/")
    ).client.specs.serialize()
    fp = fingerprint({**circuit_members, "client.specs.json": specs})
    why = "" if qm.settings.get("qat") else "calibrate on data that covers them"  # "": clips as trained, silently
    common = {
        "scheme": "tfhe",
        "fingerprint": fp,
        "input_shape": list(qm.input_shape),
        "output_shape": list(qm.output_shape),
    }
    client = {
        **common,
        "quant": qm._input_node.attrs,
        "dequant": qm._output_node.attrs,
        "clip_remedy": why,
        "preprocess": pre,
        "postprocess": post,
    }
    stats = qm.statistics
    server_doc = {
        **common,
        "statistics": {k: stats[k] for k in ("pbs_count", "max_bit_width", "p_error", "global_p_error")},
    }
    client_members = {**build_members(client, "client model"), "client.specs.json": specs}
    server_members = {**build_members(server_doc, "server model"), **circuit_members, "client.specs.json": specs}
    return client_members, server_members


def _ckks_docs(cm) -> tuple[dict, dict]:
    from qfhe.ckks.backends.seal import SEALBackend, rotation_steps
    from qfhe.ir.graph import Graph, Node

    SEALBackend().check(cm.graph, cm.params)  # no bootstrap nodes, 128-bit secure unless allow_insecure
    params = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cm.params).items()}
    graph_members = build_members(graph_to_plain(cm.graph), "graph", "graph.json", "graph/")
    params_member = {"params.json": json.dumps(params, sort_keys=True).encode()}
    fp = fingerprint({**graph_members, **params_member})
    encrypts = [n for n in cm.graph.nodes if n.op == "encrypt"]
    # The client needs the packing of inputs and outputs, not the weights: keep only those nodes.
    client_graph = Graph(
        encrypts + [Node(o, "decrypt", [encrypts[0].name], cm.graph[o].attrs) for o in cm.graph.outputs],
        cm.graph.outputs,
    )
    common = {
        "scheme": "ckks",
        "fingerprint": fp,
        "input_shape": list(cm.input_shape),
        "output_shape": [cm.output_size],
        "samples_per_ciphertext": cm.samples_per_ciphertext,
    }
    client = {
        **common,
        "params": params,
        "graph": graph_to_plain(client_graph),
        "steps": rotation_steps(cm.graph),
        "preprocess": None,
        "postprocess": {"kind": "none"},
    }
    return build_members(client, "client model"), {
        **build_members(common, "server model"),
        **graph_members,
        **params_member,
    }


def graph_to_plain(graph) -> dict:
    """A :class:`qfhe.ir.Graph` as plain data (see :func:`graph_from_plain`).

    Examples
    --------
    >>> from qfhe.ir import Graph, Node
    >>> graph_to_plain(Graph([Node("x", "input", [], {"shape": (2,)})], ["x"]))["outputs"]
    ['x']
    """
    return {
        "nodes": [{"name": n.name, "op": n.op, "inputs": list(n.inputs), "attrs": n.attrs} for n in graph.nodes],
        "outputs": list(graph.outputs),
    }


def graph_from_plain(data: dict, where: str = "model.json"):
    """Rebuild a graph written by :func:`graph_to_plain` (after decoding its arrays), checking its form:
    string names used once, string ops, inputs defined before use, dict attributes.

    Examples
    --------
    >>> from qfhe.ir import Graph, Node
    >>> g = graph_from_plain(graph_to_plain(Graph([Node("x", "input", [], {"shape": (2,)})], ["x"])))
    >>> g["x"].attrs
    {'shape': (2,)}
    >>> graph_from_plain({"nodes": [{"name": "y", "op": "add", "inputs": ["x"], "attrs": {}}], "outputs": ["y"]})
    Traceback (most recent call last):
    ...
    qfhe.errors.ArtifactError: model.json: malformed graph (node 0)
    """
    from qfhe.ir.graph import Graph, Node

    try:
        nodes, seen = [], set()
        for i, n in enumerate(data["nodes"]):
            name, op, inputs, attrs = n["name"], n["op"], n["inputs"], n["attrs"]
            if not (
                isinstance(name, str)
                and isinstance(op, str)
                and isinstance(inputs, list)
                and isinstance(attrs, dict)
                and name not in seen
                and all(isinstance(x, str) and x in seen for x in inputs)
            ):
                raise ArtifactError(f"{where}: malformed graph (node {i})")
            seen.add(name)
            nodes.append(Node(name, op, list(inputs), dict(attrs)))
        outputs = list(data["outputs"])
        if not outputs or not all(isinstance(o, str) and o in seen for o in outputs):
            raise ArtifactError(f"{where}: malformed graph (outputs)")
        return Graph(nodes, outputs)
    except (KeyError, TypeError):
        raise ArtifactError(f"{where}: malformed graph (a node lacks name, op, inputs or attrs)") from None


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
    signing_key : optional
        An Ed25519 private key (object, PEM bytes, 32 raw bytes, or a PEM file path; see
        :func:`qfhe.deploy.generate_signing_key`): both manifests are signed, so servers and
        clients can refuse anything else (``verify_key``).

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> from qfhe.sklearn import LogisticRegression
    >>> X = np.random.RandomState(0).randn(60, 3); y = (X[:, 0] > 0).astype(int)
    >>> clf = LogisticRegression(n_bits=4).fit(X, y).compile(X, p_error=0.01)
    >>> FHEModelDev(tempfile.mkdtemp(), clf).save()["client"].name
    'client.zip'
    """

    def __init__(self, path, model, compress: bool = True, signing_key=None):
        self.path = Path(path)
        self.model = model
        self.compress = bool(compress)
        self.signing_key = signing_key

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

        if self.signing_key is not None:
            private_key(self.signing_key)  # refuse a bad key before compiling anything
        model, pre, post = _unwrap(self.model)
        if isinstance(model, CompiledCKKSModel):
            client, server = _ckks_docs(model)
            scheme = "ckks"
        else:
            client, server = _tfhe_docs(model, pre, post, self.compress)
            scheme = "tfhe"
        info = {"scheme": scheme, "model_type": type(self.model).__name__}
        return {
            kind: write_artifact(self.path / ARTIFACT_FILES[kind], kind, members, info, self.signing_key)
            for kind, members in (("client", client), ("server", server))
        }
