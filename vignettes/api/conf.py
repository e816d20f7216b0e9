"""Sphinx configuration of the dfmr API reference (built by tests/run with -W into a temporary directory).

    python -m sphinx -W -b html vignettes/api /tmp/dfmr-docs

The Python reference documents every public module of the installed package, found at build time
(so modules added later appear without editing these sources); the CLI page is generated from the
argparse parser; the C++ page shows the public headers, whose comments are the C++ documentation.
"""

from __future__ import annotations

import importlib.util
import os
import pkgutil
import re
from pathlib import Path

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective

import dfmr

project = "dfmr"
author = "dfmr developers"
release = version = dfmr.__version__
extensions = ["sphinx.ext.autodoc", "numpydoc"]
root_doc = "index"
exclude_patterns = ["_build"]
html_theme = "alabaster"
# scikit-learn generates set_<method>_request methods (metadata routing) for fit(..., site_col=...);
# their docstrings link to scikit-learn's own glossary, which is not part of these pages.
autodoc_default_options = {"members": True, "show-inheritance": True,
                           "exclude-members": "set_fit_request, set_score_request, set_predict_request"}
autodoc_typehints = "none"  # the numpydoc sections state the types
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
# Optional dependencies of single modules (the R bridge, the dask backend) need not be installed to
# document them.
autodoc_mock_imports = [name for name in ("rpy2", "dask", "distributed") if importlib.util.find_spec(name) is None]

REPO = Path(__file__).resolve().parents[2]


def public_modules() -> list[str]:
    """Every public module of the dfmr package, sorted (private ones start with an underscore)."""
    found = pkgutil.walk_packages(dfmr.__path__, prefix="dfmr.")
    return sorted(info.name for info in found if not any(part.startswith("_") for part in info.name.split(".")))


# Docstrings are numpydoc plain text written by many hands, not reStructuredText: scikit-learn-style
# attribute names (``n_machines_``) and absolute values or determinants (``|B|``) outside literals are
# hyperlink and substitution references to docutils, which -W turns into errors. They are escaped
# (outside backquoted literals) after numpydoc has formatted the docstring.
_TRAILING_UNDERSCORE = re.compile(r"(?<![\w\\])(\w*[A-Za-z0-9]_)(?![\w`])")
_BARS = re.compile(r"(?<![\\|])\|([^|\s`][^|`]*?)\|(?!\|)")


_LITERAL = re.compile(r"(``.*?``|`[^`]*`_{0,2})")


def _escape_plain_text(line: str) -> str:
    pieces = _LITERAL.split(line)
    for i in range(0, len(pieces), 2):  # even pieces lie outside backquoted spans
        piece = _TRAILING_UNDERSCORE.sub(lambda m: m.group(1)[:-1] + "\\_", pieces[i])
        pieces[i] = _BARS.sub(lambda m: "\\|" + m.group(1) + "\\|", piece)
    return "".join(pieces)


def escape_docstring(app, what, name, obj, options, lines: list[str]) -> None:
    lines[:] = [_escape_plain_text(line) for line in lines]


class AllModules(SphinxDirective):
    """``.. dfmr-modules::``: one section with ``automodule`` per public module."""

    def run(self) -> list[nodes.Node]:
        lines = []
        for name in public_modules():
            lines += [name, "-" * len(name), "", f".. automodule:: {name}", ""]
        container = nodes.section()
        self.state.nested_parse(StringList(lines, source="dfmr-modules"), self.content_offset, container,
                                match_titles=True)
        return container.children


class CliUsage(SphinxDirective):
    """``.. dfmr-cli::``: the ``--help`` text of ``dfmr`` and of every (sub)command, from the parser itself."""

    def run(self) -> list[nodes.Node]:
        from dfmr.cli import _build_parser

        out: list[nodes.Node] = []
        pending = [(["dfmr"], _build_parser())]
        while pending:
            words, parser = pending.pop(0)
            out.append(nodes.rubric(text=" ".join(words)))
            out.append(nodes.literal_block(text=parser.format_help()))
            for action in parser._actions:  # argparse offers no public access to subparsers
                if action.__class__.__name__ == "_SubParsersAction":
                    pending += [([*words, name], sub) for name, sub in action.choices.items()]
        return out


class CppHeaders(SphinxDirective):
    """``.. dfmr-cpp-headers::``: every public header of the C++ core, in full."""

    def run(self) -> list[nodes.Node]:
        lines = []
        for header in sorted((REPO / "cpp" / "include" / "dfmr").glob("*.hpp")):
            title = f"dfmr/{header.name}"
            relative = os.path.relpath(header, self.env.srcdir)  # literalinclude resolves against the sources
            lines += [title, "-" * len(title), "", f".. literalinclude:: {relative}", "   :language: cpp", ""]
        container = nodes.section()
        self.state.nested_parse(StringList(lines, source="dfmr-cpp-headers"), self.content_offset, container,
                                match_titles=True)
        return container.children


def setup(app):
    app.connect("autodoc-process-docstring", escape_docstring, priority=900)  # numpydoc runs at 500
    app.add_directive("dfmr-modules", AllModules)
    app.add_directive("dfmr-cli", CliUsage)
    app.add_directive("dfmr-cpp-headers", CppHeaders)
    return {"parallel_read_safe": True}
