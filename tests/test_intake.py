"""Intake hygiene (grading/intake.py): links, special files, archives and the instructor's code.

Every hop that reads what students hand in, with real files in scratch folders:

- submitted/: a student folder or submission folder that is a symbolic link, a linked or
  special notebook, a huge sparse file (grading/course.py students_in, grading/rebuild.py
  load_submission, the fingerprint);
- the exchange: a submission holding a link to the instructor's solutions (and fifos, hard
  links, a linked inbound entry, a ".." student id), collected by the real `nbgrader collect`;
- an LMS download: symlink, "..", absolute, bomb and too deeply nested members, archives over
  the member and size limits, through the real `nbgrader zip_collect`;
- instructor_code: the source notebook, a pasted hidden test line, the clean release;
- a small batch through the real pipeline (grading.run.batch.grade) with the expected outcomes.

A student folder that is a link to a classmate's (submitted/copycat -> submitted/good) is
left out of the batch with a warning (students_in lists real folders only); graded by name,
it scores 0 with the reason.
"""
import json
import logging
import os
import socket
import stat
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import nbformat
import pytest

from conftest import ASSIGNMENT, ROOT, make_course, nbgrader, sandbox_or_trusted
from expect import MAX_WITH_EXTRA as FULL

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from grading import intake  # noqa: E402
from grading.course import fingerprint, students_in  # noqa: E402
from grading.fill import fill_notebook, release_notebook, write_submission  # noqa: E402
from grading.rebuild import SubmissionError, load_submission  # noqa: E402

NB = f"{ASSIGNMENT}.ipynb"
REFERENCE = ROOT / "samples" / "class" / "ref_reference.py"
TIMESTAMP = "2025-03-03 09:00:00.000000 UTC"


def reference_nb(course=ROOT):
    return fill_notebook(release_notebook(course, ASSIGNMENT), REFERENCE)


def refusal(folder, name=NB, trusted=None):
    with pytest.raises(SubmissionError) as info:
        load_submission(folder, name, trusted)
    return info.value


def no_links_under(top):
    """Every path under `top` that is a link or not a regular file / folder (should be none)."""
    bad = []
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            mode = os.lstat(os.path.join(dirpath, name)).st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                bad.append(os.path.join(dirpath, name))
    return bad


# --- submitted/: the last hop ------------------------------------------------------------------

@pytest.fixture
def submitted(tmp_path):
    """A scratch submitted/ next to a source/ holding the instructor's notebook."""
    source = tmp_path / "source" / ASSIGNMENT
    source.mkdir(parents=True)
    (source / NB).write_bytes((ROOT / "source" / ASSIGNMENT / NB).read_bytes())
    folder = tmp_path / "submitted"
    good = folder / "good" / ASSIGNMENT
    good.mkdir(parents=True)
    nbformat.write(reference_nb(), str(good / NB))
    return folder


@pytest.mark.fast
def test_students_in_lists_real_folders_only(submitted, caplog):
    (submitted / "copycat").symlink_to(submitted / "good")           # a classmate's folder
    (submitted / "teacher").symlink_to(submitted.parent / "source")  # the instructor's
    (submitted / "notes.txt").write_text("not a student")
    os.mkfifo(submitted / "pipe")
    (submitted / ".cache").mkdir()
    (submitted / "real" / ASSIGNMENT).mkdir(parents=True)
    (submitted / "other_assignment_only" / "hw2").mkdir(parents=True)  # did not hand this one in
    with caplog.at_level(logging.WARNING, logger="grading.intake"):
        assert students_in(submitted.parent, ASSIGNMENT) == ["good", "real"]
    warned = caplog.text
    assert "copycat" in warned and "teacher" in warned and "symbolic link" in warned and "pipe" in warned


@pytest.mark.fast
def test_a_linked_submission_folder_is_refused(submitted):
    (submitted / "linker").mkdir()
    (submitted / "linker" / ASSIGNMENT).symlink_to(submitted.parent / "source" / ASSIGNMENT)
    error = refusal(submitted / "linker" / ASSIGNMENT)
    assert error.code == "unreadable_notebook"
    assert error.reason == "提交的文件夹是符号链接，拒绝读取 (the submission folder is a symbolic link: refused)"


@pytest.mark.fast
def test_a_linked_student_folder_is_refused(submitted):
    (submitted / "copycat").symlink_to(submitted / "good")
    error = refusal(submitted / "copycat" / ASSIGNMENT)
    assert error.reason == "学生文件夹是符号链接，拒绝读取 (the student folder is a symbolic link: refused)"
    # a notebook deeper inside a linked parent: every component below `trusted` is checked
    error = refusal(submitted / "copycat" / ASSIGNMENT, trusted=submitted.parent)
    assert "符号链接" in error.reason and "symbolic link" in error.reason


@pytest.mark.fast
def test_a_linked_or_special_notebook_is_refused(submitted, monkeypatch):
    folder = submitted / "s" / ASSIGNMENT
    folder.mkdir(parents=True)
    (folder / NB).symlink_to(submitted.parent / "source" / ASSIGNMENT / NB)
    assert refusal(folder).reason == f"notebook {NB} 是符号链接，拒绝读取 (the notebook is a symbolic link: refused)"
    (folder / NB).unlink()
    (folder / NB).symlink_to("/dev/zero")  # device-like, through a link
    assert "symbolic link" in refusal(folder).reason
    (folder / NB).unlink()
    os.mkfifo(folder / NB)  # opening it would block: it is never opened
    started = time.monotonic()
    assert "named pipe" in refusal(folder).reason and time.monotonic() - started < 5
    (folder / NB).unlink()
    monkeypatch.chdir(folder)  # a socket's path has ~100 bytes at most: bind it relative
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(NB)
        assert "socket" in refusal(folder).reason
    (folder / NB).unlink()
    try:
        os.mknod(folder / NB, stat.S_IFCHR | 0o600, os.makedev(1, 5))  # a /dev/zero of its own
    except (PermissionError, OSError):
        pass  # no CAP_MKNOD here: the link to /dev/zero above stands for it
    else:
        assert "character device" in refusal(folder).reason


@pytest.mark.fast
def test_a_renamed_notebook_must_be_a_regular_file(submitted):
    folder = submitted / "s" / ASSIGNMENT
    folder.mkdir(parents=True)
    (folder / "channels (1).ipynb").symlink_to(submitted / "good" / ASSIGNMENT / NB)
    assert refusal(folder).code == "missing_notebook"  # the link is not a candidate
    nbformat.write(reference_nb(), str(folder / "channels-Copy1.ipynb"))
    nb, notes = load_submission(folder, NB)
    assert {n.code for n in notes} == {"renamed_notebook", "files_refused"}


@pytest.mark.fast
def test_links_and_special_files_beside_the_notebook_are_noted(submitted):
    folder = submitted / "good" / ASSIGNMENT
    (folder / "solutions").symlink_to(submitted.parent / "source" / ASSIGNMENT)
    os.mkfifo(folder / "pipe")
    nb, notes = load_submission(folder, NB)
    assert [n.code for n in notes] == ["files_refused"]
    assert "solutions (符号链接 symbolic link)" in notes[0] and "pipe (命名管道 named pipe (fifo))" in notes[0]


@pytest.mark.fast
def test_a_huge_sparse_file_is_never_read(submitted, monkeypatch):
    folder = submitted / "good" / ASSIGNMENT
    with open(folder / NB, "r+b") as f:
        f.truncate(20 * 2 ** 30)  # 20 GB of nothing, on no disk
    reads = []
    real_read = os.read
    monkeypatch.setattr(os, "read", lambda fd, n: reads.append(len(data := real_read(fd, n))) or data)
    error = refusal(folder)
    assert "file too large" in error.reason and "20480 MB" in error.reason
    assert reads == []  # refused on its lstat size
    started = time.monotonic()
    fingerprint(submitted.parent, ASSIGNMENT, "good")  # the regrade fingerprint does not read it either
    # (it reads the engine's and the instructor's files: well under a megabyte each)
    assert time.monotonic() - started < 5 and sum(reads) < 5 * 2**20


@pytest.mark.fast
def test_safe_student_ids():
    for name in ("alice", "wang.fang", "li+2", "张伟", "a-b_c@x"):
        assert intake.safe_id(name), name
    for name in ("..", ".", ".hidden", "a/b", "", "eve\nroot", "a b", None):
        assert not intake.safe_id(name), name


@pytest.mark.fast
def test_read_regular_never_reads_past_the_limit(tmp_path):
    (tmp_path / "f").write_bytes(b"x" * 1000)
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert intake.read_regular(fd, "f", 1000) == b"x" * 1000
        with pytest.raises(intake.Refused) as info:
            intake.read_regular(fd, "f", 999)
        assert info.value.kind == "too_large"
    finally:
        os.close(fd)


# --- the exchange: nbgrader collect ------------------------------------------------------------

def _inbound(exchange, student, suffix):
    path = exchange / "d2l-channels" / "inbound" / f"{student}+{ASSIGNMENT}+{TIMESTAMP}+{suffix}"
    path.mkdir(parents=True)
    return path


def test_exchange_collect_copies_no_link_and_notes_what_it_refused(course, tmp_path):
    exchange = tmp_path / "exchange"
    source_nb = course / "source" / ASSIGNMENT / NB
    (exchange / "d2l-channels" / "inbound").mkdir(parents=True)

    # alice: her notebook is a link to the instructor's solutions; more links, a fifo, a hard link
    alice = _inbound(exchange, "alice", "a1")
    (alice / NB).symlink_to(source_nb)
    (alice / "checks.py").write_bytes((course / "release" / ASSIGNMENT / "checks.py").read_bytes())
    (alice / "timestamp.txt").write_text(TIMESTAMP)
    (alice / "solutions").symlink_to(source_nb.parent)
    (alice / "sub" / "deeper").mkdir(parents=True)
    (alice / "sub" / "deeper" / "answers.ipynb").symlink_to(source_nb)
    os.mkfifo(alice / "pipe")
    os.link(source_nb, alice / "hard.ipynb")
    with open(alice / "big.bin", "wb") as f:
        f.truncate(200 * 10 ** 6)  # sparse, over the size limit
    (alice / "intake.json").write_text("[]")  # ours, not hers
    (alice / "run.sh").write_text("echo hi\n")
    os.chmod(alice / "run.sh", 0o4777)
    # bob: the inbound entry itself is a link to the instructor's folder
    (exchange / "d2l-channels" / "inbound" / f"bob+{ASSIGNMENT}+{TIMESTAMP}+b1").symlink_to(source_nb.parent)
    # a student id that is no safe file name (nbgrader's glob never lists "..", which starts with a dot)
    nbformat.write(reference_nb(course), str(_inbound(exchange, "eve\nroot", "e1") / NB))
    # carol: an ordinary submission
    carol = _inbound(exchange, "carol", "c1")
    nbformat.write(reference_nb(course), str(carol / NB))
    (carol / "timestamp.txt").write_text(TIMESTAMP)

    proc = nbgrader(course, "collect", ASSIGNMENT, f"--Exchange.root={exchange}", "--CollectApp.check_owner=False")
    log = proc.stdout + proc.stderr
    submitted = course / "submitted"
    assert sorted(os.listdir(submitted)) == ["alice", "bob", "carol"]
    assert "not a safe file name" in log
    assert no_links_under(submitted) == []
    secret = source_nb.read_bytes()
    copied = [p for p in submitted.rglob("*") if p.is_file()]
    assert not [p for p in copied if p.read_bytes() == secret], "the instructor's notebook was collected"

    got = course / "submitted" / "alice" / ASSIGNMENT
    assert sorted(p.relative_to(got).as_posix() for p in got.rglob("*") if p.is_file()) == [
        "checks.py", "intake.json", "run.sh", "timestamp.txt"]
    assert stat.S_IMODE((got / "run.sh").stat().st_mode) & 0o7177 == 0  # rw for the grader, nothing else
    why = {item["path"]: item["why"] for item in json.loads((got / "intake.json").read_text())}
    assert why == {i["path"]: i["why"] for i in intake.refused_at_intake(got)} and set(why) == {
        NB, "solutions", "sub/deeper/answers.ipynb", "pipe", "hard.ipynb", "big.bin", "intake.json"}
    assert "symbolic link" in why[NB] and "symbolic link" in why["sub/deeper/answers.ipynb"]
    assert "fifo" in why["pipe"] and "hard link" in why["hard.ipynb"] and "too large" in why["big.bin"]
    assert "reserved" in why["intake.json"]
    assert f"Refused in the submission of alice: {NB}:" in log

    bob = submitted / "bob" / ASSIGNMENT
    assert os.listdir(bob) == ["intake.json"]
    assert "symbolic link" in intake.refused_at_intake(bob)[0]["why"]
    assert "Refused in the submission of bob" in log
    assert sorted(os.listdir(submitted / "carol" / ASSIGNMENT)) == [NB, "timestamp.txt"]  # nothing refused

    # grading reads that: alice has no notebook, and the reason says why
    error = refusal(got)
    assert error.code == "missing_notebook"


# --- an LMS download: nbgrader zip_collect --------------------------------------------------------

def _zip_add(zf, name, data=b"", mode=None, compress=zipfile.ZIP_DEFLATED):
    info = zipfile.ZipInfo(name, date_time=(2025, 3, 3, 9, 0, 0))
    info.compress_type = compress
    if mode is not None:
        info.create_system = 3
        info.external_attr = mode << 16
    zf.writestr(info, data)


def _zip_bytes(members):
    import io
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for member in members:
            _zip_add(zf, *member)
    return buf.getvalue()


def test_zip_collect_refuses_unsafe_members(course):
    archive = course / "downloaded" / ASSIGNMENT / "archive"
    archive.mkdir(parents=True)
    good = nbformat.writes(reference_nb(course)).encode()
    deepest = _zip_bytes([("x_1_1_channels.ipynb", good)])
    upload = _zip_bytes([("wangfang_20452_880125_channels.ipynb", good), ("deeper.zip", deepest)])
    with zipfile.ZipFile(archive / "submissions.zip", "w") as zf:
        _zip_add(zf, "zhangwei_20431_880101_channels.ipynb", good)
        _zip_add(zf, "lina_20417_880117_channels.ipynb", b"../../../../source/channels/channels.ipynb",
                 mode=stat.S_IFLNK | 0o777)
        _zip_add(zf, "../evil_20000_1_channels.ipynb", good)
        _zip_add(zf, "/tmp/abs_20001_1_channels.ipynb", good)
        _zip_add(zf, "pipe_20002_1_channels.ipynb", b"", mode=stat.S_IFIFO | 0o644)
        _zip_add(zf, "bomb_20003_1_channels.ipynb", bytes(64 * 2 ** 20))   # over the member limit
        _zip_add(zf, "ratio_20004_1_channels.ipynb", bytes(8 * 2 ** 20))   # compressed ~1000 times
        _zip_add(zf, "wangfang_20452_880125_upload.zip", upload, compress=zipfile.ZIP_STORED)
    # files that zip_collect would put in the student's folder under the grader's own names, had
    # the course's collector accepted .json and .txt files (the setting below)
    with zipfile.ZipFile(archive / "forged.zip", "w") as zf:
        _zip_add(zf, "forger_20470_880140_intake.json", b'[{"path": "x", "why": "the grader is broken"}]')
        _zip_add(zf, "forger_20470_880140_timestamp.txt", b"2025-01-01 00:00:00")
        _zip_add(zf, "forger_20470_880140_channels.ipynb", good)
    # a tar.gz with links and a device next to an ordinary notebook
    with tarfile.open(archive / "late.tar.gz", "w:gz") as tf:
        def add(name, kind, data=b"", linkname=""):
            info = tarfile.TarInfo(name)
            info.type, info.size, info.linkname, info.mtime = kind, len(data), linkname, 1741000000
            import io
            tf.addfile(info, io.BytesIO(data) if data else None)
        add("liuyang_20460_880130_channels.ipynb", tarfile.REGTYPE, good)
        add("chen_20461_880131_channels.ipynb", tarfile.SYMTYPE, linkname="/etc/passwd")
        add("hard_20462_880132_channels.ipynb", tarfile.LNKTYPE, linkname="liuyang_20460_880130_channels.ipynb")
        add("dev_20463_880133_channels.ipynb", tarfile.CHRTYPE)
    # over the limits set below: too many members, too large once uncompressed
    with zipfile.ZipFile(archive / "many.zip", "w") as zf:
        for i in range(40):
            _zip_add(zf, f"m{i}_1_1_channels.ipynb", b"{}")
    with zipfile.ZipFile(archive / "big.zip", "w") as zf:
        for i in range(3):
            _zip_add(zf, f"big{i}_1_1_channels.ipynb", bytes(40 * 2 ** 20))
    config = (ROOT / "samples" / "lms" / "nbgrader_zip_config.py").read_text(encoding="utf-8")
    config = config.replace(r"(?:-\d+)?\.ipynb$", r"(?:-\d+)?\.(?:ipynb|json|txt)$")
    (course / "zipcfg.py").write_text(config + "\nc.SafeExtractor.max_members = 30\n"
                                      "c.SafeExtractor.max_total_bytes = 100 * 2 ** 20\n"
                                      "c.FileNameCollectorPlugin.valid_ext = ['.ipynb', '.json', '.txt']\n",
                                      encoding="utf-8")

    proc = nbgrader(course, "zip_collect", ASSIGNMENT, "--ZipCollectApp.config_file=zipcfg", "--force")
    log = proc.stdout + proc.stderr
    downloaded, submitted = course / "downloaded", course / "submitted"
    assert no_links_under(downloaded) == [] and no_links_under(submitted) == []
    assert not (downloaded / ASSIGNMENT / "evil_20000_1_channels.ipynb").exists()
    assert not Path("/tmp/abs_20001_1_channels.ipynb").exists()
    assert max(p.stat().st_size for p in downloaded.rglob("*") if p.is_file()) < 50 * 2 ** 20 + 2 ** 20

    # the forger's notebook collected, the files named like the grader's refused (and said so)
    forger = submitted / "forger" / ASSIGNMENT
    assert sorted(os.listdir(forger)) == [NB, "intake.json"]
    whys = sorted(i["why"] for i in intake.refused_at_intake(forger))
    assert len(whys) == 2 and whys[0].startswith("intake.json 是评分系统保留的文件名") \
        and whys[1].startswith("timestamp.txt 是评分系统保留的文件名") and "reserves" in whys[0], whys
    # collected: the ordinary notebooks, also the one inside the student's own zip (depth 2)
    for student in ("zhangwei", "wangfang", "liuyang"):
        assert (submitted / student / ASSIGNMENT / NB).read_bytes() == good, student
        assert not (submitted / student / ASSIGNMENT / "intake.json").exists(), student
    # refused, and said so in the folder of the student the file name maps to
    expected = {"lina": "symbolic link", "evil": "'..'", "abs": "absolute path", "pipe": "fifo",
                "bomb": "member too large", "ratio": "zip bomb", "chen": "symbolic link", "hard": "hard link",
                "dev": "character device"}
    assert sorted(os.listdir(submitted)) == sorted(set(expected) | {"zhangwei", "wangfang", "liuyang", "forger"})
    for student, words in expected.items():
        folder = submitted / student / ASSIGNMENT
        assert os.listdir(folder) == ["intake.json"], student
        items = intake.refused_at_intake(folder)
        assert len(items) == 1 and words in items[0]["why"], (student, items)
        assert f"(student {student})" in log
    # refused without a student: too deep, and the archives over the limits
    assert "deeper.zip: 压缩包嵌套过深" in log and "archive nested too deep" in log
    assert "many.zip: 压缩包成员过多" in log and "too many members" in log
    assert "big.zip: 解压后总大小超过上限" in log and "uncompressed size over the limit" in log
    assert not any(p.name.startswith(("m0_", "big0_", "x_")) for p in downloaded.rglob("*"))


# --- the instructor's code in a submission ---------------------------------------------------------

def _instructor_code(nb):
    source = nbformat.read(str(ROOT / "source" / ASSIGNMENT / NB), as_version=4)
    release = nbformat.read(str(release_notebook(ROOT, ASSIGNMENT)), as_version=4)
    checks = (ROOT / "release" / ASSIGNMENT / "checks.py").read_text(encoding="utf-8")
    return intake.instructor_code(nb, source, release, [checks])


@pytest.mark.fast
def test_instructor_code_finds_the_source_notebook():
    source = nbformat.read(str(ROOT / "source" / ASSIGNMENT / NB), as_version=4)
    found = _instructor_code(source)
    whats = {(f["cell"], f["what"]) for f in found}
    assert ("corr2d", "marker") in whats and ("test_corr2d", "marker") in whats
    assert ("test_corr2d", "hidden_test") in whats and ("corr2d", "solution") in whats
    assert ("written_1x1", "solution") in whats  # the reference answer of the written question
    # the raw file's text too (a student who pasted or cat'ed it)
    text = (ROOT / "source" / ASSIGNMENT / NB).read_text(encoding="utf-8")
    assert {f["what"] for f in _instructor_code(text)} >= {"marker"}


@pytest.mark.fast
def test_instructor_code_finds_a_pasted_hidden_test_line():
    source = nbformat.read(str(ROOT / "source" / ASSIGNMENT / NB), as_version=4)
    test = next(c for c in source.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "test_corr2d_multi_in")
    hidden = test.source.split("### BEGIN HIDDEN TESTS")[1].split("### END HIDDEN TESTS")[0]
    line = max((ln for ln in hidden.splitlines() if not ln.strip().startswith(("#", "from ", "import "))), key=len)
    nb = reference_nb()
    nb.cells.append(nbformat.v4.new_code_cell("# checking my answer\n" + "    " + line.strip() + "   "))
    found = _instructor_code(nb)
    assert [(f["what"], f["lines"]) for f in found] == [("hidden_test", 1)]
    assert found[0]["cell"].startswith("#") and found[0]["excerpt"] == line.strip()[:80]


@pytest.mark.fast
def test_instructor_code_finds_nothing_in_honest_work():
    release = nbformat.read(str(release_notebook(ROOT, ASSIGNMENT)), as_version=4)
    assert _instructor_code(release) == []
    for sample in sorted((ROOT / "samples" / "class").glob("*.py")):  # the book's code is no evidence
        assert _instructor_code(fill_notebook(release, sample)) == [], sample.name


# --- a small batch through the real pipeline --------------------------------------------------------

#: student -> (status, autograded total (FULL: every autograded point, extra credit too), flags, words
#: every reason/note must show)
EXPECTED = {
    "good": ("graded", FULL, [], []),
    # submitted/linked_source/channels -> source/channels: the instructor's notebook is never read
    "linked_source": ("unreadable", 0.0, ["unreadable_notebook"], ["符号链接", "symbolic link"]),
    # the student's notebook carries the source notebook's text: graded as usual, flagged
    "cheater": ("graded", FULL, ["instructor_code"], ["hidden tests or solutions"]),
    # what the exchange refused (intake.json) and links beside the notebook: graded, flagged
    "refused": ("graded", FULL, ["files_refused"], ["solutions", "zero", "pipe"]),
}


def test_batch_refuses_links_and_flags_instructor_code(tmp_path, caplog):
    from grading.course import Course
    from grading.run.batch import grade
    course = sandbox_or_trusted(make_course(tmp_path / "course"))  # trusted code: the reference and the source
    ref = reference_nb(course)
    write_submission(course, "good", {NB: ref}, ASSIGNMENT)
    (course / "submitted" / "linked_source").mkdir(parents=True)
    (course / "submitted" / "linked_source" / ASSIGNMENT).symlink_to(course / "source" / ASSIGNMENT)
    (course / "submitted" / "copycat").symlink_to(course / "submitted" / "good")
    cheat = reference_nb(course)
    cheat.cells.append(nbformat.v4.new_raw_cell((course / "source" / ASSIGNMENT / NB).read_text(encoding="utf-8")))
    write_submission(course, "cheater", {NB: cheat}, ASSIGNMENT)
    folder = write_submission(course, "refused", {NB: ref, "intake.json": json.dumps(
        [{"path": "solutions", "why": "符号链接，未复制 (symbolic link: not copied)"}])}, ASSIGNMENT)
    (folder / "zero").symlink_to("/dev/zero")
    os.mkfifo(folder / "pipe")

    with caplog.at_level(logging.WARNING, logger="grading.intake"):
        results = {r.student: r for r in grade(course, ASSIGNMENT, jobs=1, progress=False)}
    # the link to a classmate's folder is nobody's submission: left out, with a warning
    assert sorted(results) == sorted(EXPECTED) and "copycat" in caplog.text
    problems = []
    for student, (status, total, flags, words) in EXPECTED.items():
        r = results[student]
        auto = sum(r.scores[t] for t in r.tests)
        said = " ".join(r.reasons + r.notes)
        if (r.status, auto, r.flags) != (status, total, flags) or not all(w in said for w in words):
            problems.append(f"{student}: expected {status} {total:g} {flags} {words}, got {r.status} {auto:g} "
                            f"{r.flags} reasons={r.reasons} notes={r.notes}")
    assert not problems, "\n".join(problems)
    assert results["linked_source"].reasons[0] == \
        "提交的文件夹是符号链接，拒绝读取 (the submission folder is a symbolic link: refused)"
    assert results["cheater"].needs_attention and results["refused"].needs_attention
    assert not results["good"].needs_attention
    # graded by name, the copycat scores 0 with the reason instead of the classmate's work
    error = refusal(Course(course, ASSIGNMENT).submitted("copycat"))
    assert error.reason == "学生文件夹是符号链接，拒绝读取 (the student folder is a symbolic link: refused)"
