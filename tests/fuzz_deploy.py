"""Generated (fuzzed) inputs for every parser of untrusted deployment bytes.

Run by ``tests/test_deploy_security.py`` in a subprocess (a native crash then fails the test instead
of killing pytest): ``python tests/fuzz_deploy.py TARGET ARTIFACTS EXAMPLES [--fresh]`` (the suite
replays a fixed sequence; ``--fresh`` draws new inputs, for longer campaigns by hand). Each target draws
inputs with hypothesis and requires every one to end in a qfhe error of the expected class or a
valid result, within a deadline per input; the process prints its peak memory at the end.

Targets: ``envelope`` (the request/response framing), ``zip`` (byte-level mutations of both
artifacts), ``docs`` (JSON-level mutations of every member, with the manifest and fingerprint
recomputed so that the mutation reaches the document checks), ``wire`` (Cap'n Proto-level
mutations of ciphertexts and evaluation keys).
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import warnings
import zipfile
from datetime import timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

warnings.simplefilter("ignore")

from qfhe.deploy import FHEModelClient, envelope  # noqa: E402
from qfhe.deploy.artifacts import read_artifact  # noqa: E402
from qfhe.deploy.concrete_wire import check_evaluation_keys, check_value, expected_keys, gates  # noqa: E402
from qfhe.deploy.dev import fingerprint  # noqa: E402
from qfhe.deploy.server import load_server_spec  # noqa: E402
from qfhe.errors import ArtifactError, CiphertextError, ConfigurationError  # noqa: E402

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=12), children, max_size=6),
    max_leaves=40,
)
OUTCOMES: dict = {}


def _outcome(fn, *args, allowed=(ArtifactError,)):
    try:
        fn(*args)
        OUTCOMES["ok"] = OUTCOMES.get("ok", 0) + 1
    except allowed as exc:
        key = f"{type(exc).__name__}: {str(exc)[:48]}"
        OUTCOMES[key] = OUTCOMES.get(key, 0) + 1


def _zip(members: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for n, b in members.items():
            z.writestr(n, b)
    return buf.getvalue()


def _members(data: bytes) -> dict:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {n: z.read(n) for n in z.namelist()}


def _reseal(members: dict) -> dict:
    members = dict(members)
    if "model.json" in members:
        try:
            doc = json.loads(members["model.json"])
            if isinstance(doc, dict) and "circuit.json" in members:
                doc["fingerprint"] = fingerprint(members)
                members["model.json"] = json.dumps(doc).encode()
        except ValueError:
            pass
    manifest = json.loads(members["manifest.json"])
    manifest["members"] = {
        n: {"sha256": hashlib.sha256(b).hexdigest(), "size": len(b)} for n, b in members.items() if n != "manifest.json"
    }
    members["manifest.json"] = json.dumps(manifest).encode()
    return members


def _load_both(client_zip: bytes, server_zip: bytes) -> None:
    _outcome(load_server_spec, server_zip)
    _outcome(FHEModelClient, client_zip, allowed=(ArtifactError, ConfigurationError))


def main(target: str, root: str, examples: int, fresh: bool = False) -> None:
    root = Path(root)
    client_zip, server_zip = (root / "client.zip").read_bytes(), (root / "server.zip").read_bytes()
    client = FHEModelClient(root)
    fp = client.fingerprint
    common = settings(
        max_examples=examples,
        deadline=timedelta(seconds=20),
        derandomize=not fresh,
        database=None,
        suppress_health_check=list(HealthCheck),
    )

    if target == "envelope":
        header = st.fixed_dictionaries(
            {
                "model": st.sampled_from([fp, "x"]),
                "kind": st.sampled_from(["inputs", "keys"]),
                "items": JSON,
                "meta": JSON,
            }
        )

        @common
        @given(
            st.one_of(st.binary(max_size=300), header.map(json.dumps), JSON.map(json.dumps)),
            st.binary(max_size=64),
            st.integers(0, 2**32 - 1),
            st.booleans(),
        )
        def run(head, body, length, honest):
            raw = head if isinstance(head, bytes) else head.encode()
            size = len(raw) if honest else length
            blob = envelope.MAGIC + size.to_bytes(4, "big") + raw + body
            for kind in ("inputs", "keys", "outputs"):
                _outcome(envelope.unpack, blob, fp, kind, 16, allowed=(CiphertextError,))
    elif target == "zip":

        @common
        @given(
            st.sampled_from(["client", "server"]),
            st.lists(st.tuples(st.integers(0, 2**31), st.integers(0, 255)), min_size=1, max_size=8),
            st.integers(0, 2**31),
        )
        def run(which, flips, cut):
            data = bytearray(client_zip if which == "client" else server_zip)
            for at, value in flips:
                data[at % len(data)] = value
            data = bytes(data[: len(data) - cut % 64])
            _load_both(data if which == "client" else client_zip, data if which == "server" else server_zip)
    elif target == "docs":
        originals = {"client": _members(client_zip), "server": _members(server_zip)}

        @common
        @given(st.sampled_from(["client", "server"]), st.data())
        def run(which, data):
            members = dict(originals[which])
            name = data.draw(st.sampled_from(sorted(n for n in members if n != "manifest.json")))
            if name.endswith(".npy"):
                members[name] = data.draw(
                    st.sampled_from(
                        [
                            b"\x93NUMPY\x01\x00v\x00{'descr': '<i8', 'fortran_order': False, 'shape': (10000000000,), }"
                            + b" " * 50,
                            b"\x93NUMPY\x01\x00v\x00{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
                            + b" " * 56,
                            b"\x93NUMPY\x01\x00\x10\x00{'descr': __import__('os').system('true')}",
                            b"",
                        ]
                    )
                    | st.binary(max_size=200)
                )
            else:
                doc = json.loads(members[name])
                node, path = doc, []
                for _ in range(data.draw(st.integers(0, 6))):
                    if isinstance(node, dict) and node:
                        key = data.draw(st.sampled_from(sorted(node)))
                    elif isinstance(node, list) and node:
                        key = data.draw(st.integers(0, len(node) - 1))
                    else:
                        break
                    path.append(key)
                    node = node[key]
                value = data.draw(JSON)
                if path:
                    parent = doc
                    for key in path[:-1]:
                        parent = parent[key]
                    if data.draw(st.booleans()) and isinstance(parent, dict):
                        del parent[path[-1]]
                    else:
                        parent[path[-1]] = value
                else:
                    doc = value
                members[name] = json.dumps(doc).encode()
            blob = _zip(_reseal(members))
            _load_both(blob if which == "client" else client_zip, blob if which == "server" else server_zip)
    elif target == "wire":
        spec = json.loads(read_artifact(root, "client").members["client.specs.json"])
        gate_in, gate_out = gates(spec)[0][0], gates(spec)[1][0]
        expected = expected_keys(spec["keyset"])
        value = envelope.unpack(client.quantize_encrypt_serialize([[0.0] * client.input_shape[0]]), fp, "inputs").items[
            0
        ][0][1]
        keys = envelope.unpack(client.get_serialized_evaluation_keys(), fp, "keys").items[0][0][1]
        head = keys[:4096]  # the structure lives at the front; the payloads follow

        @common
        @given(
            st.sampled_from(["value", "keys"]),
            st.lists(st.tuples(st.integers(0, 2**31), st.integers(0, 255)), min_size=1, max_size=6),
            st.integers(0, 64),
        )
        def run(which, flips, cut):
            data = bytearray(value if which == "value" else head)
            for at, v in flips:
                data[at % len(data)] = v
            data = bytes(data[: len(data) - cut])
            if which == "value":
                _outcome(check_value, data, gate_in, "a value", allowed=(CiphertextError,))
                _outcome(check_value, data, gate_out, "a result", allowed=(CiphertextError,))
            else:
                _outcome(check_evaluation_keys, data + keys[len(head) :], expected, allowed=(CiphertextError,))
    else:
        raise SystemExit(f"unknown target {target}")
    run()
    print(json.dumps(OUTCOMES))
    # VmHWM belongs to this address space; ru_maxrss would carry the peak of the process that forked this one
    hwm = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM"))
    print("peak rss MB", int(hwm.split()[1]) / 1024)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), fresh="--fresh" in sys.argv[4:])
