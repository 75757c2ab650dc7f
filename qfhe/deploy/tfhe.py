"""The TFHE side of deployment: concrete-python's own client/server serialization.

The server artifact carries the circuit as MLIR text plus its compile options as plain JSON; the
server recompiles it (:func:`make_server`). The client artifact carries concrete's client specs
(parameters, no key). Keys, ciphertexts and evaluation keys are concrete's own serialized bytes.

Examples
--------
>>> from concrete import fhe
>>> opts = compile_options(fhe.Configuration(p_error=0.01), compress=True)
>>> opts["p_error"], opts["compress_evaluation_keys"], opts["parameter_selection_strategy"]
(0.01, True, 'multi')
"""

from __future__ import annotations

from concrete import fhe
from concrete.fhe.compilation import configuration as _cfg

from qfhe.errors import ArtifactError, CiphertextError, ConfigurationError

#: The Configuration fields that change what ``fhe.Server.create`` compiles from MLIR; the others
#: act while tracing, which the MLIR already reflects.
_BOOL_FIELDS = ("loop_parallelize", "dataflow_parallelize", "auto_parallelize", "compress_evaluation_keys",
                "compress_input_ciphertexts", "composable", "enable_tlu_fusing")
_ENUM_FIELDS = {"parameter_selection_strategy": _cfg.ParameterSelectionStrategy,
                "multi_parameter_strategy": _cfg.MultiParameterStrategy,
                "security_level": _cfg.SecurityLevel}


def compile_options(configuration: fhe.Configuration, compress: bool) -> dict:
    """The server compile options of ``configuration`` as plain JSON data.

    ``compress`` turns on concrete's compressed evaluation keys and input ciphertexts (smaller
    uploads, the same crypto-parameters).

    Raises
    ------
    ConfigurationError
        For a keyset or range restriction, which this format does not carry.

    Examples
    --------
    >>> compile_options(fhe.Configuration(), compress=False)["security_level"]
    128
    """
    if configuration.keyset_restriction or configuration.range_restriction:
        raise ConfigurationError("a circuit compiled with keyset_restriction or range_restriction cannot be deployed by "
                                 "qfhe; compile without them")
    out = {name: bool(getattr(configuration, name)) for name in _BOOL_FIELDS}
    out.update({name: getattr(configuration, name).value for name in _ENUM_FIELDS})
    out["p_error"] = configuration.p_error
    out["global_p_error"] = configuration.global_p_error
    if compress:
        out["compress_evaluation_keys"] = out["compress_input_ciphertexts"] = True
    return out


def configuration_from_options(options: dict) -> fhe.Configuration:
    """Inverse of :func:`compile_options` (only the listed fields are read).

    Examples
    --------
    >>> configuration_from_options(compile_options(fhe.Configuration(p_error=0.1), False)).p_error
    0.1
    """
    try:
        kwargs = {name: bool(options[name]) for name in _BOOL_FIELDS}
        kwargs.update({name: cls(options[name]) for name, cls in _ENUM_FIELDS.items()})
        for name in ("p_error", "global_p_error"):
            v = options[name]
            kwargs[name] = None if v is None else float(v)
    except (KeyError, ValueError, TypeError) as exc:
        raise ArtifactError(f"member compile_options.json is invalid ({type(exc).__name__}: {exc})") from None
    return fhe.Configuration(**kwargs)


def make_server(mlir: str, options: dict) -> fhe.Server:
    """Compile the server from MLIR text and plain options (no native code is loaded from disk).

    Examples
    --------
    >>> callable(make_server)
    True
    """
    try:
        return fhe.Server.create(mlir, configuration_from_options(options))
    except RuntimeError as exc:
        raise ArtifactError(f"member circuit.mlir does not compile with this concrete-python ({exc})") from None


def server_parameters(server: fhe.Server) -> dict:
    """The figures that must not change between the save and a later recompilation.

    Examples
    --------
    >>> callable(server_parameters)
    True
    """
    return {"size_of_bootstrap_keys": int(server.size_of_bootstrap_keys),
            "size_of_keyswitch_keys": int(server.size_of_keyswitch_keys),
            "size_of_secret_keys": int(server.size_of_secret_keys)}


def load_specs(data: bytes) -> fhe.ClientSpecs:
    """concrete's client specs from the artifact member.

    Examples
    --------
    >>> load_specs(b"junk")
    Traceback (most recent call last):
    ...
    qfhe.errors.ArtifactError: member client.specs.json is not valid concrete-python client specs ...
    """
    try:
        return fhe.ClientSpecs.deserialize(data)
    except (RuntimeError, ValueError) as exc:
        raise ArtifactError(f"member client.specs.json is not valid concrete-python client specs ({exc})") from None


def load_evaluation_keys(data: bytes) -> fhe.EvaluationKeys:
    """Deserialize uploaded evaluation keys.

    Examples
    --------
    >>> load_evaluation_keys(b"junk")
    Traceback (most recent call last):
    ...
    qfhe.errors.CiphertextError: these are not valid evaluation keys ...
    """
    try:
        return fhe.EvaluationKeys.deserialize(bytes(data))
    except (RuntimeError, ValueError) as exc:
        raise CiphertextError(f"these are not valid evaluation keys for a concrete-python circuit ({exc}); send "
                              "FHEModelClient.get_serialized_evaluation_keys()") from None


def run_sample(server: fhe.Server, data: bytes, keys: fhe.EvaluationKeys) -> bytes:
    """Run the circuit on one serialized encrypted sample; return the serialized encrypted result.

    Examples
    --------
    >>> callable(run_sample)
    True
    """
    try:
        value = fhe.Value.deserialize(bytes(data))
    except (RuntimeError, ValueError) as exc:
        raise CiphertextError(f"an encrypted sample is malformed or truncated ({exc})") from None
    try:
        return server.run(value, evaluation_keys=keys).serialize()
    except (RuntimeError, ValueError) as exc:
        raise CiphertextError(f"the circuit refused an encrypted sample ({str(exc).splitlines()[0]}): it was encrypted "
                              "for another circuit or with other parameters") from None
