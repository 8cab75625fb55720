"""Rebuild samples/lms/submissions.zip, an example of an LMS download for `nbgrader zip_collect`.

The archive looks like what Canvas's "Download Submissions" gives for an assignment: one
zip, every uploaded file renamed to ``<student>_<LATE_><user id>_<submission id>_<file name>``
(``-1`` is added before the extension when a student uploads a second file of the same name).
Three students of the bundled sample class hand in channels.ipynb under Canvas names; one
of them also uploads a stray Untitled.ipynb, which zip_collect skips:

    zhangwei  ref_reference   every answer right     19   (17 + 2 extra credit)
    lina      partial         first two answers       6    late, second upload (-1)
    wangfang  stack_axis      c_o on the last axis   16.5  also Untitled.ipynb

(autograded points; 100 % is 20 with the written answer's 3, graded by the instructor.)

The notebooks are the release notebook filled with samples/class/<sample>.py (grading.fill),
so the archive follows the assignment: rebuild it after `make release`.

    python samples/lms/make_archive.py          # rewrite submissions.zip
    python samples/lms/make_archive.py --check  # exit 1 when submissions.zip is out of date

The zip is reproducible byte for byte: fixed order, time stamps and permissions, stored
without compression (compressed bytes could differ between zlib builds).
"""
import argparse
import io
import sys
import zipfile
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))
from grading.fill import TIMESTAMP, fill_notebook, release_notebook  # noqa: E402

ARCHIVE = HERE / "submissions.zip"
ASSIGNMENT = "channels"
# (Canvas login = nbgrader student id, sample of samples/class, Canvas user id, submission id, late, upload suffix)
STUDENTS = [
    ("zhangwei", "ref_reference", 20431, 880101, False, ""),
    ("lina", "partial", 20417, 880117, True, "-1"),
    ("wangfang", "stack_axis", 20452, 880125, False, ""),
]
STRAY = ("wangfang", 20452, 880125, "Untitled.ipynb")  # uploaded by mistake; not a release notebook
# Every entry gets the sample class's submission time (zip keeps local time, 2 s resolution).
DATE_TIME = tuple(int(x) for x in TIMESTAMP[:19].replace("-", " ").replace(":", " ").split())


def canvas_name(login, user_id, submission_id, late, filename):
    return f"{login}_{'LATE_' if late else ''}{user_id}_{submission_id}_{filename}"


def entries(course_root=ROOT):
    """[(name in the zip, bytes)] in archive order."""
    release = release_notebook(course_root, ASSIGNMENT)
    release_nb = nbformat.read(str(release), as_version=4)
    stem, ext = release.stem, release.suffix
    files = []
    for login, sample, user_id, submission_id, late, suffix in STUDENTS:
        nb = fill_notebook(release_nb, ROOT / "samples" / "class" / f"{sample}.py")
        name = canvas_name(login, user_id, submission_id, late, f"{stem}{suffix}{ext}")
        files.append((name, nbformat.writes(nb).encode("utf-8")))
    login, user_id, submission_id, filename = STRAY
    files.append((canvas_name(login, user_id, submission_id, False, filename),
                  nbformat.writes(nbformat.v4.new_notebook()).encode("utf-8")))
    return sorted(files)


def build_archive(course_root=ROOT):
    """The archive's bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in entries(course_root):
            info = zipfile.ZipInfo(name, date_time=DATE_TIME)
            info.external_attr = 0o644 << 16
            info.create_system = 3  # Unix, whatever machine builds it
            archive.writestr(info, data)
    return buffer.getvalue()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with submissions.zip instead of writing it")
    args = parser.parse_args(argv)
    data = build_archive()
    if args.check:
        if ARCHIVE.exists() and ARCHIVE.read_bytes() == data:
            print(f"{ARCHIVE.relative_to(ROOT)} is up to date")
            return 0
        print(f"{ARCHIVE.relative_to(ROOT)} is out of date: run python {Path(__file__).relative_to(ROOT)}")
        return 1
    ARCHIVE.write_bytes(data)
    print(f"wrote {ARCHIVE.relative_to(ROOT)} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
