"""The formgrader's manual-grading page without a CDN.

nbgrader renders each submission for manual grading with its template 'formgrade', which
loads MathJax 2 from cdnjs. Offline (a classroom without internet) the math stays TeX and,
worse, nbgrader's formgrade.js stops half-way through its start-up at `MathJax.Hub`, so the
page's keyboard shortcuts (Tab to the next score, Ctrl+. to the next submission) never work.

`FormgradePage` runs in the formgrader's exporter (c.HTMLExporter, which nbgrader builds
for the formgrader without a parent) and hands the template `formgrade_offline` the same
MathJax 3 as the feedback page (grading/nbsteps/feedback.py), inlined, then a few lines
that give formgrade.js the start-up signal of MathJax 2 it listens for. Without
node_modules/ only those lines are inlined: the page works and math stays TeX.
"""
import os

from nbconvert.preprocessors import Preprocessor
from traitlets import Unicode

from grading.nbsteps.feedback import TEMPLATES, find_mathjax, mathjax_scripts

#: formgrade.js calls `MathJax.Hub.Startup.signal.Interest(f)` and scrolls to the selected
#: input when f gets "End"; MathJax 3 says the same with a promise.
STARTUP_SIGNAL = r"""window.MathJax = window.MathJax || {};
MathJax.Hub = {Startup: {signal: {Interest: function (f) {
  var ready = MathJax.startup && MathJax.startup.promise ? MathJax.startup.promise : Promise.resolve();
  ready.then(function () { f("End"); });
}}}};"""


def formgrade_scripts(mathjax_path):
    """The scripts of the page's head, in order: MathJax's configuration and MathJax 3 when
    `mathjax_path` is given, then the start-up signal."""
    return mathjax_scripts(mathjax_path) + [STARTUP_SIGNAL]


class FormgradePage(Preprocessor):
    """MathJax 3 and formgrade.js's start-up signal for the template `formgrade_offline`.

    `mathjax`: MathJax 3's es5/tex-svg.js; empty (the default): node_modules/mathjax3 of
    the course (`course_root`), then the one next to the grading package.
    """

    mathjax = Unicode("", help="MathJax 3's es5/tex-svg.js; empty: node_modules/ of the course").tag(config=True)
    course_root = Unicode("", help="the course folder (nbgrader_config.py's)").tag(config=True)

    def preprocess(self, nb, resources):
        path = find_mathjax(self.mathjax, self.course_root, self.log, "formgrader")
        resources["offline_page"] = {"scripts": formgrade_scripts(path)}
        return nb, resources


def configure_exporter(c, course_root):
    """The formgrader's page: template `formgrade_offline` and `FormgradePage` on the
    exporter nbgrader builds for the formgrader (class config c.HTMLExporter; feedback's
    exporter, c.GenerateFeedback.HTMLExporter, sets its own template and no preprocessor)."""
    import nbgrader.server_extensions.formgrader as formgrader
    ui = os.path.join(os.path.dirname(formgrader.__file__), "templates")
    c.HTMLExporter.template_name = "formgrade_offline"
    c.HTMLExporter.extra_template_basedirs = [str(TEMPLATES), ui]
    c.HTMLExporter.extra_template_paths = [ui]
    c.HTMLExporter.preprocessors = [FormgradePage]
    c.FormgradePage.course_root = str(course_root)
    c.GenerateFeedback.HTMLExporter.preprocessors = []
