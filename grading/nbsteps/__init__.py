"""The engine's steps in nbgrader's autograde and feedback, one nbgrader preprocessor per module.

Autograde (nbgrader_config.py lists them; `nbgrader autograde`, the formgrader's button and
`python -m grading grade` all run the same steps):

    rebuild.RebuildFromRelease  (sanitize, first) the release cells with the student's answers put in
    execute.GradedExecute       run the notebook in the sandboxed kernel, locked down first, within
                                the student's budget, output capped and sanitized; no test cell runs
    sanitize.SanitizeNotebook   the student's markdown, attachments, outputs and own cells' metadata
                                through grading/jail/sanitize.py
    verdicts.ApplyVerdicts      the verifier's verdict into every test cell (grading fails closed)
    verdicts.SaveGrades         nbgrader's SaveAutoGrades, and what extra-credit cells earned
Feedback:
    sanitize.SanitizeNotebook   again (notebooks graded before it existed)
    feedback.HideHiddenTests    no hidden test code and no traceback in the student's feedback
    feedback.OfflineFeedbackPage  MathJax inlined, a Content-Security-Policy, tables laid out
The formgrader's manual-grading page:
    formgrade.FormgradePage     MathJax inlined, not from a CDN (nbgrader's page otherwise)
"""


def sanitize_steps():
    """nbgrader's sanitize steps of autograde, with the rebuild from the release first."""
    from nbgrader.preprocessors import CheckCellMetadata, ClearOutput, DeduplicateIds, OverwriteCells, OverwriteKernelspec
    from grading.nbsteps.rebuild import RebuildFromRelease
    return [RebuildFromRelease, ClearOutput, DeduplicateIds, OverwriteKernelspec, OverwriteCells, CheckCellMetadata]


def autograde_steps():
    """nbgrader's autograde steps with Execute replaced, SanitizeNotebook right after it,
    ApplyVerdicts after the output limit and SaveAutoGrades extended to extra credit."""
    from nbgrader.converters import Autograde
    from nbgrader.preprocessors import Execute, LimitOutput, SaveAutoGrades
    from grading.nbsteps.execute import GradedExecute
    from grading.nbsteps.sanitize import SanitizeNotebook
    from grading.nbsteps.verdicts import ApplyVerdicts, SaveGrades
    steps = []
    for step in Autograde.class_traits()["autograde_preprocessors"].default():
        steps.append(GradedExecute if step is Execute else SaveGrades if step is SaveAutoGrades else step)
        if step is Execute:
            steps.append(SanitizeNotebook)
        if step is LimitOutput:
            steps.append(ApplyVerdicts)
    return steps


def feedback_steps():
    """nbgrader's feedback steps, then the student's content sanitized, hidden tests hidden, the page offline."""
    from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
    from nbgrader.preprocessors import GetGrades
    from grading.nbsteps.feedback import HideHiddenTests, OfflineFeedbackPage
    from grading.nbsteps.sanitize import SanitizeNotebook
    return [GetGrades, CSSHTMLHeaderPreprocessor, SanitizeNotebook, HideHiddenTests, OfflineFeedbackPage]
