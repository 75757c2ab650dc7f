"""Every public function, class and method in qfhe has a numpydoc docstring with an example."""

import importlib
import inspect
import pkgutil

import qfhe


def _public_objects():
    for info in pkgutil.walk_packages(qfhe.__path__, "qfhe."):
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(obj):
                yield f"{module.__name__}.{name}", obj
            elif inspect.isclass(obj) and not issubclass(obj, (Exception, Warning)):
                yield f"{module.__name__}.{name}", obj
                for mname, member in vars(obj).items():
                    if not mname.startswith("_") and (inspect.isfunction(member) or isinstance(member, property)):
                        yield f"{module.__name__}.{name}.{mname}", member


def test_public_api_has_docstrings_with_examples():
    missing = []
    for qualname, obj in _public_objects():
        doc = inspect.getdoc(obj) or ""
        if "Examples" not in doc and ">>>" not in doc:
            missing.append(qualname)
    assert not missing, "public objects without an example in their docstring:\n" + "\n".join(missing)


def _docs_ext():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "docs" / "_ext" / "qfhe_docs.py"
    spec = importlib.util.spec_from_file_location("qfhe_docs", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_generated_part_of_the_docs_renders():
    """Every marker of every page renders (the docs build does the same with warnings as errors): a benchmark
    table that reads a key its JSON lost, an unknown marker or an error class without its catalogue paragraphs
    fails here too, without Sphinx."""
    from pathlib import Path

    ext = _docs_ext()
    pages = sorted((Path(__file__).resolve().parents[1] / "docs").rglob("*.md"))
    kinds = []
    for page in pages:
        text = page.read_text()
        kinds += [m.group(1) for m in ext.MARKER.finditer(text)]
        rendered = ext.render(text, page.name)
        assert "<!-- bench-table" not in rendered and "<!-- ops-table" not in rendered, page
    assert {"ops-table", "errors-catalogue", "bench-table", "api", "headline-table"} <= set(kinds)
    assert kinds.count("bench-table") >= 20


def test_a_stale_benchmark_table_fails_with_the_column_named():
    import pytest

    ext = _docs_ext()
    spec = {"file": "knn", "columns": {"N": "{n_train}", "lost": "{no_such_key}"}}
    with pytest.raises(ext.DocsError, match=r"knn.json: column 'lost' reads 'no_such_key'"):
        ext.bench_table(spec)
    with pytest.raises(ext.DocsError, match=r"page.md: bench-table marker: .*needs 'file' and 'columns'"):
        ext.render("<!-- bench-table\ncolumns: {a: b}\n-->", "page.md")


def test_every_error_class_says_when_it_is_raised_and_what_to_do():
    import inspect

    import qfhe.errors as errors

    for name in errors.__all__:
        doc = inspect.getdoc(getattr(errors, name))
        paragraphs = doc.split("\n\n")
        assert paragraphs[1].startswith(("Raised ", "Issued when", "Never ")), name
        assert paragraphs[2].startswith("What to do:"), name
    catalogue = _docs_ext().errors_catalogue()
    assert all(f"### `{name}`" in catalogue for name in errors.__all__)


def test_readme_is_a_short_front_page_whose_links_resolve():
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    links = re.findall(r"\]\(([^)\s]+)\)", readme)
    assert len(links) > 15
    for link in links:
        if link.startswith(("http://", "https://")):
            continue
        target = link.split("#")[0]
        assert (root / target).exists(), f"README links to {link}, which does not exist"


def test_readme_headline_table_is_the_generated_one():
    """The README keeps a copy of the headline table (GitHub does not run Sphinx): it must equal the render."""
    from pathlib import Path

    ext = _docs_ext()
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert ext.sync_block(readme, "headline-table", ext.headline_table()) == readme, (
        "README's headline table is stale: run python docs/_ext/qfhe_docs.py"
    )
