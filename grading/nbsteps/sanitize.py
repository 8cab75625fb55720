"""The student's content through grading/jail/sanitize.py, as an nbgrader step."""
from nbgrader.preprocessors import NbGraderPreprocessor


class SanitizeNotebook(NbGraderPreprocessor):
    """Run grading/jail/sanitize.py's `sanitize_notebook` over the notebook; log what it removed.

    In autograde it runs right after the kernel (before ApplyVerdicts writes the verdicts,
    which are the pipeline's own); in generate_feedback before the page is made.
    """

    def preprocess(self, nb, resources):
        from grading.jail.sanitize import sanitize_notebook
        removed = sanitize_notebook(nb)
        info = resources.get("nbgrader", {}) if isinstance(resources, dict) else {}
        if removed:
            self.log.warning("Sanitized %s: %d item(s) removed: %s%s", info.get("student", "?"), len(removed),
                             "; ".join(removed[:20]), " ..." if len(removed) > 20 else "")
        if isinstance(info, dict):
            info["sanitized"] = removed
        return nb, resources
