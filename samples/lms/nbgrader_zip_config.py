"""nbgrader settings for collecting a Canvas "Download Submissions" archive with zip_collect.

From the course folder, with the archive saved as downloaded/channels/archive/submissions.zip:

    nbgrader zip_collect channels --ZipCollectApp.config_file=samples/lms/nbgrader_zip_config --force

(the path is given without ".py"; nbgrader still reads the course's nbgrader_config.py).
The same lines can go into nbgrader_config.py instead; then `nbgrader zip_collect channels`
needs no option.

Canvas names every file in the archive
    <student>_<canvas user id>_<submission id>_<file name as uploaded>
with LATE_ after <student> for a late submission and -1, -2, ... before the extension
when a student uploaded a file of the same name again. <student> is the student's name
in lower case without spaces or punctuation; it becomes the nbgrader student id (the
folder under submitted/), the numbers are dropped. When two students share a name, key
students by Canvas user id instead: swap the names of the groups `student_id` and `canvas_user`.
"""
c = get_config()  # noqa: F821  (provided by traitlets when nbgrader loads this file)

# zip_collect applies the pattern to the whole path of each extracted file.
c.FileNameCollectorPlugin.named_regexp = (
    r".*/(?P<student_id>[A-Za-z0-9]+)_(?:LATE_)?(?P<canvas_user>\d+)_(?P<submission>\d+)_"
    r"(?P<file_id>[^/]+?)(?:-\d+)?\.ipynb$"
)
# Skip files whose name is not one of the release notebooks (e.g. a stray Untitled.ipynb).
c.ZipCollectApp.strict = True
