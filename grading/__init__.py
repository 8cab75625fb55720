"""The grading engine, for any nbgrader assignment under source/: `python -m grading <command>`.

    python -m grading demo                 the whole loop on the bundled sample class
    python -m grading grade [ASSIGNMENT]   autograde what was handed in (parallel, jailed; --all)
    python -m grading run-one A --student S  one student, start to end
    python -m grading feedback [A]         feedback pages
    python -m grading report               the class reports
    python -m grading export-lms --roster R   grade files for Canvas and Moodle

Folders: jail/ (everything that runs jailed or parses what comes out of a jail), nbsteps/
(nbgrader's steps), run/ (one submission, the workers, the batch), reports/ (tables, the
class report, LMS files). On top: the course and its assignments (course.py), an
assignment's contract and policy (contract.py), the settings (settings.py), intake,
rebuild, results, the gradebook. docs/grading.md has the map. Importing the package
imports none of them.
"""
