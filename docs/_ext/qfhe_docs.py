"""Sphinx extension: the generated parts of the docs, rendered at build time so that none can go stale.

A page holds a marker where generated content goes; Sphinx's ``source-read`` event replaces it before MyST
parses the page:

- ``<!-- ops-table -->``: the table of supported PyTorch operations (``qfhe.frontend.coverage``);
- ``<!-- errors-catalogue -->``: every class of ``qfhe.errors``, from its docstring;
- ``<!-- headline-table -->``: qfhe beside Concrete ML's quoted figures (the README keeps a copy, checked by a test);
- ``<!-- api qfhe.sklearn -->``: the module's ``__all__``, one autodoc entry each;
- ``<!-- bench-table ... -->``: a table read from ``benchmarks/results/<file>.json``, with the date and machine
  of its run. The marker's body is YAML::

      file: tfhe_mlp          # benchmarks/results/tfhe_mlp.json
      rows: rows              # the list of rows in it (a dotted path)
      where: {model: mlp}     # optional: keep rows with these values
      columns:                # header: a str.format template over the row's keys
        configuration: "{config}"
        FHE s/sample: "{fhe_s:.2f}"

A key missing from the JSON, an unknown marker or an error class without its "Raised when" and "What to do"
paragraphs fails the build (``make docs``), and ``tests/test_docs.py`` renders every marker too.
"""

from __future__ import annotations

import inspect
import json
import math
import re
import string
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
MARKER = re.compile(r"<!--\s*(ops-table|errors-catalogue|headline-table|bench-table|api)\b(.*?)-->", re.S)


class DocsError(Exception):
    """A generated part of the docs cannot be rendered (names the page and the marker)."""


class _Format(string.Formatter):
    """``str.format`` with the benchmark scripts' number style: JSON null is "-", floats get 3 significant digits."""

    def format_field(self, value, spec):
        if value is None:
            return "-"
        if isinstance(value, float) and not spec:
            if math.isnan(value):
                return "-"
            return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
        if isinstance(value, bool) and not spec:
            return "yes" if value else "no"
        return super().format_field(value, spec)


class _Row(dict):
    """A JSON row in which a key that another row of the table has reads as missing ("-"), any other as an error."""

    def __init__(self, row: dict, known: set):
        super().__init__(row)
        self.known = known

    def __missing__(self, key):
        if key in self.known:
            return None
        raise KeyError(key)


def _dig(payload, path: str):
    for part in path.split("."):
        payload = payload[int(part)] if isinstance(payload, list) else payload[part]
    return payload


def bench_table(spec: dict) -> str:
    """Render one ``bench-table`` marker's YAML ``spec`` as a caption and a Markdown table.

    Examples
    --------
    >>> print(bench_table({"file": "qat_vs_ptq", "rows": "rows", "columns": {"PBS": "{pbs_count}"}}).splitlines()[2])
    | PBS |
    """
    path = RESULTS / f"{spec['file']}.json"
    payload = json.loads(path.read_text())
    rows = _dig(payload, spec.get("rows", "rows"))
    if isinstance(rows, dict):
        rows = [rows]
    for key, value in (spec.get("where") or {}).items():
        rows = [r for r in rows if r.get(key) == value]
    if not rows:
        raise DocsError(f"{path.name}: no row at {spec.get('rows')!r} matches {spec.get('where')}")
    columns = spec["columns"]
    fmt = _Format()
    known = {k for row in rows for k in row}
    body = []
    for row in rows:
        row = _Row(row, known)
        cells = []
        for header, template in columns.items():
            try:
                cells.append(fmt.vformat(str(template), (), row).replace("|", "\\|"))
            except KeyError as exc:
                raise DocsError(f"{path.name}: column {header!r} reads {exc} which its rows do not have") from None
        body.append("| " + " | ".join(cells) + " |")
    m = payload["machine"]
    caption = (
        f"*Measured {m['date']} on {m['machine']} (concrete-python {m.get('concrete-python', '?')}, "
        f"torch {m.get('torch', '?')}); data: `benchmarks/results/{path.name}`.*"
    )
    head = "| " + " | ".join(columns) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    return "\n".join([caption, "", head, sep, *body])


def headline_table() -> str:
    """qfhe measured beside Concrete ML's quoted figures: the README's and the home page's table.

    Reads ``vs_concrete_ml.json`` (the issue-25 digits MLP and CNN, ``tune_circuit``, every seed) and
    ``trees.json`` (tree ensembles on breast_cancer); Concrete ML's figures are the ones those files quote.

    Examples
    --------
    >>> headline_table().splitlines()[2].startswith("| model |")
    True
    """
    nets = json.loads((RESULTS / "vs_concrete_ml.json").read_text())
    trees = json.loads((RESULTS / "trees.json").read_text())
    rows = []
    names = {"mlp": "digits MLP (issue 25)", "cnn": "digits CNN (issue 25)"}
    for model, quoted in nets["quoted"].items():
        tuned = [r for r in nets["rows"] if r["model"] == model and r["config"].startswith("tuned")]
        if not tuned:
            raise DocsError(f"vs_concrete_ml.json has no tuned row for {model}")
        label, (cml_acc, cml_s) = max(
            ((k, v) for k, v in quoted.items() if k.startswith("Concrete ML")), key=lambda kv: kv[1][0]
        )
        acc = " / ".join(f"{r['acc_sim']:.3f}" for r in tuned)
        secs = " / ".join(f"{r['fhe_s']:.2f}" for r in tuned)
        speed = " / ".join(f"{cml_s / r['fhe_s']:.1f}x" for r in tuned)
        setting = label.removeprefix("Concrete ML, ")
        rows.append(
            f"| {names[model]} | `tune_circuit`: {acc}, {secs} s | {setting}: {cml_acc:.3f}, {cml_s} s | {speed} |"
        )
    for r in trees["rows"]:
        if "cml_acc" not in r or r["data"] != "breast_cancer":
            continue
        rows.append(
            f"| {r['model']}, breast_cancer | {r['simulate']:.3f}, {r['fhe_s']:.2f} s | "
            f"{r['cml_acc']:.3f}, {r['cml_s']} s | {r['speedup']:.1f}x |"
        )
    dates = f"{nets['machine']['date']} and {trees['machine']['date']}"
    caption = (
        f"*qfhe measured {dates} on {nets['machine']['machine']} (`benchmarks/vs_concrete_ml.py --seeds 0 1`, "
        "two trainings, and `benchmarks/trees.py`). Concrete ML 1.9's figures are quoted from the qfhe issues that "
        "set these goals, in the same configurations (Concrete ML is not installed here). Accuracy is simulated "
        "test accuracy; latency is per encrypted sample.*"
    )
    head = "| model | qfhe: accuracy, latency (measured) | Concrete ML 1.9: accuracy, latency (quoted) | speed-up |"
    return "\n".join([caption, "", head, "|---|---|---|---|", *rows])


def sync_block(text: str, name: str, content: str) -> str:
    """Replace what lies between ``<!-- name -->`` and ``<!-- /name -->`` (a generated block kept in a file).

    Examples
    --------
    >>> sync_block("a <!-- t -->old<!-- /t --> b", "t", "new").split()
    ['a', '<!--', 't', '-->', 'new', '<!--', '/t', '-->', 'b']
    """
    start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    if start not in text or end not in text:
        raise DocsError(f"no {start} ... {end} block")
    a, b = text.index(start) + len(start), text.index(end)
    return text[:a] + "\n" + content + "\n" + text[b:]


def _paragraphs(doc: str) -> list[str]:
    return [" ".join(p.split()) for p in inspect.cleandoc(doc).split("\n\n") if p.strip()]


def errors_catalogue() -> str:
    """Every class of ``qfhe.errors``: what it means, what raises it, what to do, where in qfhe it is raised.

    Examples
    --------
    >>> "### `BitWidthError`" in errors_catalogue()
    True
    """
    import qfhe.errors as errors

    uses = _raise_sites()
    sections = []
    for kind, title in ((Exception, "Errors"), (Warning, "Warnings")):
        sections.append(f"## {title}")
        for name in errors.__all__:
            cls = getattr(errors, name)
            if not issubclass(cls, kind) or (kind is Exception and issubclass(cls, Warning)):
                continue
            paras = _paragraphs(cls.__doc__ or "")
            when = next((p for p in paras if p.startswith(("Raised ", "Issued when", "Never "))), None)
            todo = next((p for p in paras if p.startswith("What to do:")), None)
            if not paras or when is None or todo is None:
                raise DocsError(
                    f"qfhe.errors.{name}: its docstring needs a 'Raised when' and a 'What to do:' paragraph"
                )
            todo = todo.removeprefix("What to do:").strip()
            bases = ", ".join(f"`{b.__name__}`" for b in cls.__bases__)
            sites = ", ".join(f"`{s}`" for s in uses.get(name, [])) or "none directly (a base class)"
            label, _, rest = when.partition(" when ")
            label, when = (f"{label} when", rest) if label in ("Raised", "Issued") else ("When", when)
            sections.append(
                f"### `{name}`\n\n{_inline(paras[0])} *Derives from {bases}.*\n\n"
                f"- **{label}:** {_inline(when)}\n- **What to do:** {_inline(todo[:1].upper() + todo[1:])}\n"
                f"- **Raised in:** {sites}"
            )
    return "\n\n".join(sections)


def _inline(text: str) -> str:
    """reST inline literals (``x``) as Markdown code."""
    return re.sub(r"``(.+?)``", r"`\1`", text)


def _raise_sites() -> dict[str, list[str]]:
    """Which qfhe modules raise or warn with each class (read from the source, so it cannot drift)."""
    sites: dict[str, set[str]] = {}
    for path in sorted((ROOT / "qfhe").rglob("*.py")):
        if path.name == "errors.py":
            continue
        text = path.read_text()
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for name in set(re.findall(r"raise (\w+(?:Error|Warning))\(", text)) | set(
            re.findall(r"warn\([^;]{0,600}?\b(\w+Warning)\b", text, re.S)
        ):
            sites.setdefault(name, set()).add(module)
    return {k: sorted(v) for k, v in sites.items()}


def api_reference(module_name: str) -> str:
    """autodoc directives for every name in a module's ``__all__``, in its order (the page follows the API).

    Examples
    --------
    >>> api_reference("qfhe.prune").splitlines()[1]
    '.. autofunction:: qfhe.prune.accumulator_bound'
    """
    import importlib

    module = importlib.import_module(module_name)
    out = []
    for name in module.__all__:
        obj = getattr(module, name)
        if isinstance(obj, type) and issubclass(obj, (Exception, Warning)):
            continue  # the errors page lists them
        kind = "autoclass" if isinstance(obj, type) else "autofunction"
        out += ["```{eval-rst}", f".. {kind}:: {module_name}.{name}"]
        if kind == "autoclass" and any(b.__module__.startswith("sklearn.") for b in obj.__mro__[1:]):
            # an estimator's fit/predict/compile come from qfhe's mixins; scikit-learn's own base methods
            # (get_params, set_params, ...) are documented by scikit-learn
            out.append(f"   :inherited-members: {', '.join(_sklearn_bases(obj))}")
        out += ["```", ""]
    return "\n".join(out)


def _sklearn_bases(cls) -> list[str]:
    return [b.__name__ for b in cls.__mro__[1:] if b.__module__.startswith("sklearn.")] + ["object"]


def render_marker(kind: str, body: str) -> str:
    """The generated Markdown for one marker (``kind`` as in the module docstring, ``body`` its text).

    Examples
    --------
    >>> render_marker("ops-table", "").startswith("| PyTorch |")
    True
    """
    if kind == "ops-table":
        from qfhe.frontend.coverage import markdown_table

        return markdown_table()
    if kind == "errors-catalogue":
        return errors_catalogue()
    if kind == "headline-table":
        return headline_table()
    if kind == "api":
        return api_reference(body.strip())
    spec = yaml.safe_load(body)
    if not isinstance(spec, dict) or "file" not in spec or "columns" not in spec:
        raise DocsError(f"a bench-table marker needs 'file' and 'columns', got {body.strip()[:80]!r}")
    return bench_table(spec)


def render(markdown: str, where: str = "page") -> str:
    """Replace every marker of a page's Markdown with its generated content.

    Examples
    --------
    >>> render("<!-- ops-table -->").count("\\n") > 10
    True
    """

    def sub(m):
        line_start = markdown.rfind("\n", 0, m.start()) + 1
        indent = markdown[line_start : m.start()]  # a marker inside a list item keeps the item's indentation
        body = "\n".join(line.removeprefix(indent) for line in m.group(2).split("\n"))
        try:
            return render_marker(m.group(1), body).replace("\n", "\n" + indent)
        except (DocsError, KeyError, FileNotFoundError, yaml.YAMLError) as exc:
            raise DocsError(f"{where}: {m.group(1)} marker: {type(exc).__name__}: {exc}") from None

    return MARKER.sub(sub, markdown)


def _source_read(app, docname, source):
    """Sphinx event: render the page's markers (a failure stops the build, naming the page)."""
    from sphinx.errors import ExtensionError

    try:
        source[0] = render(source[0], docname)
    except DocsError as exc:
        raise ExtensionError(str(exc)) from None


def setup(app):
    """Register the extension with Sphinx (``extensions = ["qfhe_docs"]`` in ``docs/conf.py``)."""
    app.connect("source-read", _source_read)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


if __name__ == "__main__":  # python docs/_ext/qfhe_docs.py: refresh the README's copy of the headline table
    readme = ROOT / "README.md"
    readme.write_text(sync_block(readme.read_text(), "headline-table", headline_table()))
