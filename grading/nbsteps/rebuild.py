"""The first sanitize step of autograde: grade the release cells with the student's answers (grading/rebuild.py)."""
import os

import nbformat
from nbgrader.preprocessors import NbGraderPreprocessor

from grading.rebuild import rebuild


def coursedir_of(preprocessor):
    """The CourseDirectory of the converter running `preprocessor` (or one from its config)."""
    node = preprocessor
    while node is not None:
        if getattr(node, "coursedir", None) is not None:
            return node.coursedir
        node = getattr(node, "parent", None)
    from nbgrader.coursedir import CourseDirectory
    return CourseDirectory(config=preprocessor.config)


class RebuildFromRelease(NbGraderPreprocessor):
    """First sanitize step of `nbgrader autograde`: grade the release cells with the student's answers.

    The release notebook is found through the converter's CourseDirectory
    (release/<assignment>/<notebook>.ipynb). The notes go to the log and to
    resources["nbgrader"]["rebuild_notes"].
    """

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        coursedir = coursedir_of(self)
        release_dir = coursedir.format_path(coursedir.release_directory, ".", info["assignment"])
        release = nbformat.read(os.path.join(release_dir, info["notebook"] + ".ipynb"), as_version=4)
        nb, notes = rebuild(nb, release)
        for note in notes:
            self.log.warning("Rebuilt %s: %s", info.get("student", "?"), note)
        info["rebuild_notes"] = notes
        return nb, resources
