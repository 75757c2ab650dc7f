"""Sphinx configuration: MyST Markdown pages, numpydoc docstrings, the generated tables of ``_ext/qfhe_docs.py``.

``make docs`` builds with warnings as errors (``-W``), so a broken cross-reference, a stale generated table or a
malformed docstring fails the build.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE / "_ext")]

import qfhe  # noqa: E402

project = "qfhe"
author = "the qfhe developers"
copyright = "2026, the qfhe developers"
release = version = qfhe.__version__

extensions = ["myst_parser", "sphinx.ext.autodoc", "numpydoc", "qfhe_docs"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "_ext"]
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

# numpydoc renders the docstrings; the class pages list their members through autodoc alone
numpydoc_show_class_members = False
numpydoc_xref_param_type = False
# scikit-learn adds set_*_request methods to every estimator class (metadata routing): its own docs cover them
_ROUTING = ["fit", "score", "predict", "predict_proba", "decision_function", "partial_fit", "transform"]
autodoc_default_options = {
    "members": True,
    "member-order": "bysource",
    "exclude-members": ",".join(f"set_{m}_request" for m in _ROUTING),
}
autodoc_typehints = "none"

html_theme = "pydata_sphinx_theme"
html_title = "qfhe"
html_theme_options = {"navigation_with_keys": False, "show_toc_level": 2}
