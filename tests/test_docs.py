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


def test_readme_operation_table_is_the_generated_one():
    """The README's table of supported operations cannot drift from the frontend's vocabulary."""
    from pathlib import Path

    from qfhe.frontend.coverage import markdown_table

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    start = readme.index("<!-- ops-table")
    block = readme[readme.index("\n", start) + 1 : readme.index("<!-- /ops-table -->")].strip()
    assert block == markdown_table(), "README's operation table is stale: run python -m qfhe.frontend.coverage"
