"""Feedback without the hidden tests, that renders offline and runs no student script.

nbgrader's feedback shows the autograded notebook, in which the hidden tests were put
back, so students would read the hidden test code and the tracebacks through it
(nbgrader #917, #1156, #1363). `HideHiddenTests` runs in `nbgrader generate_feedback`
after nbgrader's own steps: in every test cell it replaces the hidden region by one
comment line and every error traceback by the exception's name and message. The
messages of the hidden asserts are written for students, so a failed hidden test still
says what went wrong.

`OfflineFeedbackPage` (the last step) and the template grading/nbsteps/templates/feedback_offline/
make the page itself safe and self-contained: a Content-Security-Policy that allows no
network at all and scripts only by their hash, MathJax 3 (`es5/tex-svg.js` of the npm
package `mathjax3` in node_modules/, SVG output: no font files) inlined and configured to
load nothing at run time, and CSS that lays tables out. Without node_modules/ the page is
still made, with the math left as TeX, and a warning. nbgrader_config.py selects both.
"""
import base64
import hashlib
from pathlib import Path

from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import List, Unicode

from grading.cells import is_test

#: The folder of the template `feedback_offline` (configure_exporter adds it to the exporter's).
TEMPLATES = Path(__file__).resolve().parent / "templates"
#: The folder that holds the grading package (and, in this repository, node_modules/).
ENGINE_ROOT = Path(__file__).resolve().parent.parent.parent
#: Where MathJax 3 lies under a folder holding node_modules/ (package.json: "mathjax3").
MATHJAX_FILE = Path("node_modules") / "mathjax3" / "es5" / "tex-svg.js"

#: MathJax 3's configuration: nothing loaded at run time (no autoload, no require), no
#: `\href`/`\class`/`\style` (the html extension is not there; \href is defined away),
#: no menu.
MATHJAX_CONFIG = r"""window.MathJax = {
  loader: {load: []},
  startup: {typeset: true},
  tex: {
    packages: {"[-]": ["autoload", "require", "html"]},
    inlineMath: [["$", "$"], ["\\(", "\\)"]],
    displayMath: [["$$", "$$"], ["\\[", "\\]"]],
    processEscapes: true,
    processEnvironments: true,
    macros: {href: ["{#2}", 2]}
  },
  svg: {fontCache: "global"},
  options: {enableMenu: false}
};"""

#: Everything else of the policy: no network (not even the page's own folder), no frames,
#: no forms, no <base>; inline styles (MathJax, nbconvert) and data: images only.
CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; font-src data:; "
       "script-src {scripts}; base-uri 'none'; form-action 'none'; object-src 'none'")

#: What a student sees where the hidden tests were.
PLACEHOLDER = "# …隐藏测试 (hidden tests)：代码不公开，失败时会显示下面的信息"




def strip_hidden(source, begin="BEGIN HIDDEN TESTS", end="END HIDDEN TESTS"):
    """`source` with each hidden region (delimiter lines included) replaced by PLACEHOLDER."""
    lines, hidden = [], False
    for line in source.splitlines():
        if begin in line:
            hidden = True
            indent = line[: len(line) - len(line.lstrip())]
            lines.append(indent + PLACEHOLDER)
        elif end in line:
            hidden = False
        elif not hidden:
            lines.append(line)
    return "\n".join(lines)


def short_error(output):
    """An error output reduced to `Name: message` (no traceback, so no code lines)."""
    output.traceback = [f"{output.ename}: {output.evalue}" if output.evalue else output.ename]
    return output


class HideHiddenTests(NbGraderPreprocessor):
    """Remove hidden test code and tracebacks from test cells, keep the failure messages."""

    # configurable as in nbgrader's GetGrades, so the HTML exporter's setting is not reported as unknown
    display_data_priority = List(NbGraderPreprocessor.display_data_priority.default_value).tag(config=True)
    begin_test_delimeter = Unicode("BEGIN HIDDEN TESTS").tag(config=True)
    end_test_delimeter = Unicode("END HIDDEN TESTS").tag(config=True)

    def preprocess_cell(self, cell, resources, index):
        if is_test(cell):
            cell.source = strip_hidden(cell.source, self.begin_test_delimeter, self.end_test_delimeter)
            for output in cell.get("outputs", []):
                if output.output_type == "error":
                    short_error(output)
        return cell, resources


def script_hash(text):
    """The CSP source that allows exactly this inline script."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


_MATHJAX = {}


#: The pages already warned about a missing MathJax (once per process, not once per student).
_WARNED = set()


def find_mathjax(configured, course_root, log, page):
    """MathJax 3's tex-svg.js for `page`: the `configured` file, else node_modules/ of the
    course, then the one next to the engine; None (and one warning per page) when there is none."""
    if configured:
        found = Path(configured) if Path(configured).is_file() else None
    else:
        found = next((p for p in (Path(r) / MATHJAX_FILE for r in (course_root, ENGINE_ROOT) if r)
                      if p.is_file()), None)
    if found is None and page not in _WARNED:
        _WARNED.add(page)
        log.warning("MathJax 3 not found (%s; `npm ci` in the course installs it): the %s shows math as TeX",
                    configured or MATHJAX_FILE, page)
    return found


def _read_mathjax(path):
    """MathJax's text, safe to put between <script> and </script> (read once per file)."""
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _MATHJAX:
        text = path.read_text(encoding="utf-8")
        _MATHJAX.clear()
        _MATHJAX[key] = text.replace("</script", "<\\/script").replace("</SCRIPT", "<\\/SCRIPT")
    return _MATHJAX[key]


def mathjax_scripts(mathjax_path):
    """[MathJax's configuration, MathJax 3] as inline scripts, or [] when `mathjax_path` is None."""
    return [MATHJAX_CONFIG, _read_mathjax(Path(mathjax_path))] if mathjax_path else []


def page_resources(mathjax_path):
    """What the template `feedback_offline` puts in the page's head: the CSP and the scripts.

    {"csp": "...", "scripts": [config, mathjax] (or [] without MathJax), "math": bool}
    """
    scripts = mathjax_scripts(mathjax_path)
    sources = " ".join(script_hash(s) for s in scripts) or "'none'"
    return {"csp": CSP.format(scripts=sources), "scripts": scripts, "math": bool(scripts)}


class OfflineFeedbackPage(NbGraderPreprocessor):
    """Last step of generate_feedback: the CSP and the inlined MathJax for the template.

    `mathjax`: the path of MathJax 3's es5/tex-svg.js; empty (the default): the course's
    node_modules/mathjax3 (`make feedback` installs it), then the one next to this package.
    """

    mathjax = Unicode("", help="MathJax 3's es5/tex-svg.js; empty: node_modules/ of the course").tag(config=True)
    display_data_priority = List(NbGraderPreprocessor.display_data_priority.default_value).tag(config=True)

    def preprocess(self, nb, resources):
        path = find_mathjax(self.mathjax, self._course_root(), self.log, "feedback")
        resources["offline_page"] = page_resources(path)
        return nb, resources

    def _course_root(self):
        try:
            from grading.nbsteps.rebuild import coursedir_of
            return coursedir_of(self).root
        except Exception:  # noqa: BLE001 (no course: look next to the package only)
            return None


def configure_exporter(exporter):
    """The feedback page's template `feedback_offline` (it extends nbgrader's 'feedback') on
    `exporter` (c.GenerateFeedback.HTMLExporter), with the folders nbgrader's template needs."""
    import os

    import nbgrader.server_extensions.formgrader as formgrader
    ui = os.path.dirname(formgrader.__file__)
    exporter.template_name = "feedback_offline"
    exporter.extra_template_basedirs = [str(TEMPLATES), os.path.join(ui, "templates")]
    exporter.extra_template_paths = [os.path.join(ui, "static", "node_modules", "bootstrap", "dist", "css"),
                                     os.path.join(ui, "templates")]
