"""The instructor's grading pipeline for the course, run as `python -m grading <command>`.

    python -m grading demo        the whole loop on the bundled sample class
    python -m grading grade       autograde everything under submitted/ (parallel, sandboxed)
    python -m grading feedback    feedback HTML for every graded submission
    python -m grading export      grades.csv

Modules: rebuild (what is graded: release cells + the student's answers), batch (the
parallel, fail-safe autograde), zygote (a warm jail per grading worker: torch imported
once, a fork per kernel), verify and sandbox (out-of-kernel checks, the jail), feedback
(no hidden test code in feedback), report (tables and the attention list), fill (sample
code into notebooks), bench. Importing the package imports none of them.
"""
