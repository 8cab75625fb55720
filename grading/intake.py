"""Intake hygiene: everything that reads, as files, what students hand in.

Every byte and every file a student hands in is hostile, and so are the links and special
files of their submission folder and of their exchange folder. Each hop copies or reads only
regular files and real folders, never follows a link, never opens a fifo or a device, and
reads at most a size limit; what it refused is said (per student, where it can be mapped to
one) so that grading shows the reason.

    the exchange     `nbgrader collect`: SafeExchangeCollect (nbgrader_config.py:
                     c.ExchangeFactory.collect). What it refused goes to the collected
                     folder as intake.json ([{"path", "why"}]) and to the log.
    an LMS archive   `nbgrader zip_collect`: SafeExtractor (c.ZipCollectApp.extractor_plugin):
                     symlink and special members, absolute and ".." paths, encrypted, huge or
                     highly compressed members, archives over a total size or member count,
                     archives nested deeper than INTAKE_LIMITS["nesting"].
    submitted/       grading: student_folders (students_in), open_folder, list_folder,
                     read_regular / read_small, refused_at_intake (the intake.json above).
    the content      instructor_code(submission, source): the instructor's hidden tests or
                     solutions inside a submission (grading flags it, the score is unchanged).

This module runs in commands that run no student code (collect, zip_collect): it imports
nothing of the sandbox and nothing heavy at import time.
"""
import contextlib
import errno
import fnmatch
import glob
import json
import logging
import os
import re
import stat
import tarfile
import zipfile
from collections import defaultdict

from traitlets import Integer

from nbgrader.exchange.default.collect import ExchangeCollect, groupby
from nbgrader.plugins.zipcollect import ExtractorPlugin

log = logging.getLogger("grading.intake")

#: Every size and count the intake enforces (bytes unless named otherwise).
INTAKE_LIMITS = {
    "file_bytes": 50 * 1024 * 1024,     # one file (the same as rebuild.MAX_BYTES)
    "folder_bytes": 100 * 1000 * 1000,  # one student's collected folder (nbgrader's max_dir_size default)
    "folder_files": 1000,               # files in one student's collected folder
    "depth": 16,                        # folders inside folders
    "archive_bytes": 2 * 1024 ** 3,     # everything extracted from one LMS download, nested archives included
    "archive_members": 20000,           # members of one LMS download, nested archives included
    "ratio": 200,                       # uncompressed / compressed size of one member larger than 1 MiB
    "nesting": 2,                       # the LMS download and one archive inside it
    "noted": 100,                       # entries written to one intake.json (then a summary)
    "small": 1024,                      # timestamp.txt, submission_secret.txt
}
#: The file the intake writes into a collected folder; a student's own file of that name is refused.
INTAKE_FILE = "intake.json"
#: Files of a submission folder that the grader writes or reads as facts (what intake refused,
#: nbgrader's time stamp): a student's file never takes one of these names at zip_collect.
RESERVED_NAMES = (INTAKE_FILE, "timestamp.txt")

_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

#: kind -> (Chinese, English) as reasons name it.
KINDS = {
    "symlink": ("符号链接", "symbolic link"),
    "hardlink": ("硬链接", "hard link"),
    "fifo": ("命名管道", "named pipe (fifo)"),
    "socket": ("套接字", "socket"),
    "chardev": ("字符设备", "character device"),
    "blockdev": ("块设备", "block device"),
    "dir": ("文件夹", "folder"),
    "file": ("普通文件", "regular file"),
    "other": ("特殊文件", "special file"),
}
#: A student id that is one safe path component (no "/", not "." or "..", no leading dot).
SAFE_ID = re.compile(r"(?!\.)[\w.@+-]{1,100}")


def kind_of(mode):
    """"file", "dir", "symlink", "fifo", "socket", "chardev", "blockdev" or "other" for an st_mode."""
    for test, kind in ((stat.S_ISREG, "file"), (stat.S_ISDIR, "dir"), (stat.S_ISLNK, "symlink"),
                       (stat.S_ISFIFO, "fifo"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "chardev"),
                       (stat.S_ISBLK, "blockdev")):
        if test(mode):
            return kind
    return "other"


def not_copied(kind):
    """'符号链接，未复制 (symbolic link: not copied)' for a kind of KINDS."""
    zh, en = KINDS.get(kind, KINDS["other"])
    return f"{zh}，未复制 ({en}: not copied)"


def too_large(size, limit):
    return f"文件过大，未复制 (file too large: not copied): {size} > {limit} bytes"


def safe_id(name):
    return isinstance(name, str) and SAFE_ID.fullmatch(name) is not None


class Refused(Exception):
    """What a student handed in cannot be read safely; `reason` (Chinese + English) says why.

    `kind` is the file kind (KINDS) or "too_large", "not_found", "changed".
    """

    def __init__(self, reason, kind="other"):
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


# --- reading submitted/ without following links ----------------------------------------------

def student_folders(submitted):
    """(student ids, [(name, why)]) under `submitted`: real folders only, sorted.

    A student folder that is a symbolic link (to a classmate's folder, to source/) or not a
    folder at all is nobody's submission: it is left out and listed with the reason. Names
    starting with a dot are skipped silently.
    """
    students, problems = [], []
    try:
        entries = list(os.scandir(submitted))
    except (FileNotFoundError, NotADirectoryError):
        return [], []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            kind = kind_of(entry.stat(follow_symlinks=False).st_mode)
        except OSError:
            continue
        if kind == "dir":
            students.append(entry.name)
        else:
            zh, en = KINDS[kind]
            problems.append((entry.name, f"学生文件夹是{zh}，不予评分 (the student folder is a {en}: not graded)"))
    return sorted(students), sorted(problems)


def open_folder(folder, trusted=None):
    """An fd of `folder`, opened one component at a time below `trusted` without following links.

    `trusted` (default: the folder two levels up, i.e. submitted/ for submitted/<student>/<a>)
    is opened normally; every component below it must be a real folder. Raises Refused with a
    reason naming the component that is a link, FileNotFoundError when a component is missing.
    """
    folder = os.path.abspath(folder)
    trusted = os.path.abspath(trusted) if trusted else os.path.dirname(os.path.dirname(folder))
    rel = os.path.relpath(folder, trusted)
    parts = [] if rel == os.curdir else rel.split(os.sep)
    if any(p in ("", os.pardir) for p in parts):
        raise ValueError(f"{folder} is not inside {trusted}")
    fd = os.open(trusted, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for i, part in enumerate(parts):
            st = os.stat(part, dir_fd=fd, follow_symlinks=False)  # FileNotFoundError: missing
            kind = kind_of(st.st_mode)
            if kind != "dir":
                zh_which, en_which = (("提交的文件夹", "the submission folder") if i == len(parts) - 1 else
                                      ("学生文件夹", "the student folder") if i == len(parts) - 2 else (part, part))
                zh, en = KINDS[kind]
                raise Refused(f"{zh_which}是{zh}，拒绝读取 ({en_which} is a {en}: refused)", kind)
            nfd = os.open(part, _OPEN_DIR, dir_fd=fd)
            if (os.fstat(nfd).st_dev, os.fstat(nfd).st_ino) != (st.st_dev, st.st_ino):
                os.close(nfd)
                raise Refused(f"{part} 在读取时被替换 ({part} changed while read: refused)", "changed")
            os.close(fd)
            fd = nfd
    except BaseException:
        os.close(fd)
        raise
    return fd


def list_folder(dir_fd):
    """{name: kind} of a folder's entries (never following a link)."""
    out = {}
    with os.scandir(dir_fd) as entries:
        for entry in entries:
            try:
                out[entry.name] = kind_of(entry.stat(follow_symlinks=False).st_mode)
            except OSError:
                out[entry.name] = "other"
    return out


def read_regular(dir_fd, name, limit):
    """The bytes of the regular file `name` in the folder `dir_fd`: at most `limit`, links never followed.

    The size is checked with lstat before anything is read (a sparse file or a /dev/zero-like
    file cannot make us read gigabytes), the file is opened with O_NOFOLLOW|O_NONBLOCK (a fifo
    cannot block us) and must be the inode that was checked; at most `limit` + 1 bytes are read.
    Raises Refused (kind "too_large" or the file's kind) or FileNotFoundError.
    """
    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    kind = kind_of(st.st_mode)
    if kind != "file":
        zh, en = KINDS[kind]
        raise Refused(f"{name} 是{zh}，拒绝读取 ({name} is a {en}: refused)", kind)
    if st.st_size > limit:
        raise Refused(f"文件过大 (file too large): {st.st_size // 2 ** 20} MB", "too_large")
    try:
        fd = os.open(name, _OPEN_FILE, dir_fd=dir_fd)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise Refused(f"{name} 是符号链接，拒绝读取 ({name} is a symbolic link: refused)", "symlink") from None
        raise
    try:
        now = os.fstat(fd)
        if not stat.S_ISREG(now.st_mode) or (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            raise Refused(f"{name} 在读取时被替换 ({name} changed while read: refused)", "changed")
        chunks, total = [], 0
        while total <= limit:
            data = os.read(fd, min(1 << 20, limit + 1 - total))
            if not data:
                break
            chunks.append(data)
            total += len(data)
        if total > limit:
            raise Refused(f"文件过大 (file too large): more than {limit // 2 ** 20} MB", "too_large")
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_small(folder, name, limit=INTAKE_LIMITS["small"], trusted=None):
    """The bytes of a small regular file `folder/name`, or None (missing, a link, special, too large)."""
    try:
        fd = open_folder(folder, trusted)
    except (OSError, Refused, ValueError):
        return None
    try:
        return read_regular(fd, name, limit)
    except (OSError, Refused):
        return None
    finally:
        os.close(fd)


def refused_at_intake(folder, trusted=None):
    """[{"path", "why"}] of what the intake refused for this submission (its intake.json), or []."""
    data = read_small(folder, INTAKE_FILE, 256 * 1024, trusted)
    if not data:
        return []
    try:
        items = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return [{"path": INTAKE_FILE, "why": "intake.json 无法读取 (unreadable intake.json)"}]
    if not isinstance(items, list):
        return []
    out = []
    for item in items[:INTAKE_LIMITS["noted"] + 1]:
        if isinstance(item, dict):
            out.append({"path": str(item.get("path", "?"))[:200], "why": str(item.get("why", "?"))[:200]})
    return out


def describe_refused(items, limit=500):
    """One line for notes and reasons: 'a (why); b (why)', clipped."""
    text = "; ".join(f"{i['path']} ({i['why']})" for i in items)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- writing what was refused ------------------------------------------------------------------

def _capped(items):
    cap = INTAKE_LIMITS["noted"]
    if len(items) <= cap:
        return list(items)
    return list(items[:cap]) + [{"path": "…", "why": f"另有 {len(items) - cap} 项被拒绝 "
                                                       f"({len(items) - cap} more refused)"}]


def _make_folders(start, rel_parts, mode=0o700):
    """Create start/rel_parts... as real folders (no link followed); return the last one's fd.
    `start`: a trusted folder's path, or an fd of one (left open)."""
    fd = os.dup(start) if isinstance(start, int) else os.open(start, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in rel_parts:
            try:
                os.mkdir(part, mode, dir_fd=fd)
            except FileExistsError:
                pass
            nfd = os.open(part, _OPEN_DIR, dir_fd=fd)  # ELOOP for a link: never written through
            os.close(fd)
            fd = nfd
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_intake(folder, items, trusted=None, mode=0o600):
    """Write intake.json ([{"path", "why"}]) into `folder`, created below `trusted` without following links."""
    folder = os.path.abspath(folder)
    trusted = os.path.abspath(trusted) if trusted else os.path.dirname(os.path.dirname(folder))
    rel = os.path.relpath(folder, trusted)
    fd = _make_folders(trusted, [] if rel == os.curdir else rel.split(os.sep))
    try:
        data = json.dumps(_capped(items), ensure_ascii=False, indent=1).encode("utf-8")
        tmp = f".{INTAKE_FILE}.tmp"
        try:
            os.unlink(tmp, dir_fd=fd)
        except FileNotFoundError:
            pass
        out = os.open(tmp, _CREATE, mode, dir_fd=fd)
        try:
            os.write(out, data)
        finally:
            os.close(out)
        os.replace(tmp, INTAKE_FILE, src_dir_fd=fd, dst_dir_fd=fd)
    finally:
        os.close(fd)


# --- copying a submission folder: the exchange ---------------------------------------------------

class _Copy:
    """Copy regular files and real folders from one folder fd to another; collect what was refused."""

    def __init__(self, limits, skip=None, file_mode=0o600, dir_mode=0o700, check_file=None,
                 reserved=(INTAKE_FILE,)):
        self.limits = limits
        self.reserved = set(reserved)  # top-level names that are ours (a student's intake.json)
        self.skip = skip or (lambda name, is_dir: False)
        self.file_mode, self.dir_mode = file_mode, dir_mode
        self.check_file = check_file or (lambda rel, data: None)
        self.refused = []
        self.bytes = self.files = 0

    def refuse(self, rel, why):
        self.refused.append({"path": rel, "why": why})

    def tree(self, sfd, dfd, prefix="", depth=0):
        try:
            entries = sorted(list_folder(sfd).items())
        except OSError as e:
            self.refuse(prefix or ".", f"无法读取 (unreadable): {e.strerror}")
            return
        # files first: the notebook at the top is copied before a subfolder can use up the budget
        for name, kind in sorted(entries, key=lambda item: (item[1] == "dir", item[0])):
            rel = prefix + name
            if self.skip(name, kind == "dir"):
                continue
            if not prefix and name in self.reserved:
                self.refuse(rel, "保留的文件名，未复制 (reserved file name: not copied)")
            elif kind == "file":
                self.file(sfd, dfd, name, rel)
            elif kind == "dir":
                self.folder(sfd, dfd, name, rel, depth)
            else:
                self.refuse(rel, not_copied(kind))

    def folder(self, sfd, dfd, name, rel, depth):
        if depth + 1 > self.limits["depth"]:
            self.refuse(rel + "/", f"文件夹层数过多，未复制 (folders nested too deep: not copied): > {self.limits['depth']}")
            return
        try:
            st = os.stat(name, dir_fd=sfd, follow_symlinks=False)
            child = os.open(name, _OPEN_DIR, dir_fd=sfd)
        except OSError as e:
            self.refuse(rel + "/", not_copied("symlink") if e.errno == errno.ELOOP
                        else f"无法读取 (unreadable): {e.strerror}")
            return
        try:
            if (os.fstat(child).st_dev, os.fstat(child).st_ino) != (st.st_dev, st.st_ino):
                self.refuse(rel + "/", "读取时被替换，未复制 (changed while copied: not copied)")
                return
            try:
                os.mkdir(name, self.dir_mode, dir_fd=dfd)
                out = os.open(name, _OPEN_DIR, dir_fd=dfd)
            except OSError as e:
                self.refuse(rel + "/", f"无法写入，未复制 (cannot write: not copied): {e.strerror}")
                return
            try:
                self.tree(child, out, rel + "/", depth + 1)
            finally:
                os.close(out)
        finally:
            os.close(child)

    def file(self, sfd, dfd, name, rel):
        limits = self.limits
        try:
            st = os.stat(name, dir_fd=sfd, follow_symlinks=False)
        except OSError as e:
            self.refuse(rel, f"无法读取 (unreadable): {e.strerror}")
            return
        if st.st_nlink > 1:
            self.refuse(rel, "硬链接，未复制 (hard link: not copied)")
            return
        if st.st_size > limits["file_bytes"]:
            self.refuse(rel, too_large(st.st_size, limits["file_bytes"]))
            return
        if self.files + 1 > limits["folder_files"]:
            self.refuse(rel, f"文件太多，未复制 (too many files: not copied): > {limits['folder_files']}")
            return
        if self.bytes + st.st_size > limits["folder_bytes"]:
            self.refuse(rel, f"提交总大小超过上限，未复制 (the submission is over its total size: not copied): "
                             f"> {limits['folder_bytes']} bytes")
            return
        try:
            data = read_regular(sfd, name, limits["file_bytes"])
        except Refused as e:
            self.refuse(rel, not_copied(e.kind) if e.kind in KINDS else f"{e.reason}，未复制 (not copied)")
            return
        except OSError as e:
            self.refuse(rel, f"无法读取 (unreadable): {e.strerror}")
            return
        why = self.check_file(rel, data)
        if why:
            self.refuse(rel, why)
            return
        try:
            out = os.open(name, _CREATE, self.file_mode, dir_fd=dfd)
            try:
                os.fchmod(out, self.file_mode)  # exactly rw for the grader (and the group if shared)
                view = memoryview(data)
                while view:
                    view = view[os.write(out, view):]
            finally:
                os.close(out)
        except OSError as e:
            self.refuse(rel, f"无法写入，未复制 (cannot write: not copied): {e.strerror}")
            return
        try:
            os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dfd, follow_symlinks=False)
        except OSError:
            pass
        self.files += 1
        self.bytes += len(data)


def _check_timestamp(rel, data):
    """A student's timestamp.txt must parse (nbgrader aborts the whole collect on a bad one)."""
    if rel != "timestamp.txt":
        return None
    from nbgrader.utils import parse_utc
    try:
        text = data.decode("utf-8").strip()
        if not text or len(data) > INTAKE_LIMITS["small"]:
            raise ValueError(text)
        parse_utc(text)
    except (ValueError, OverflowError, TypeError, UnicodeDecodeError):
        return "timestamp.txt 无法解析，未复制 (unreadable time stamp: not copied)"
    return None


class SafeExchangeCollect(ExchangeCollect):
    """`nbgrader collect` that copies only regular files and real folders from the exchange.

    nbgrader's own copy is shutil.copytree, which follows links: a submission holding a link
    to the instructor's solutions would be copied as the instructor. Here an inbound entry
    that is a link, a link at any depth, a fifo, socket or device, a hard link, a file over
    the size limit and whatever goes over the folder's total size or file count is refused,
    never opened and never followed; files are written rw for the grader only (rw for the
    group with groupshared). Inbound names whose student id is not one safe file name ("..",
    "a/b") are skipped. What was refused is written as intake.json into the collected folder
    and logged with the student id.
    """

    def _limits(self):
        limits = dict(INTAKE_LIMITS)
        cd = self.coursedir
        if cd.max_file_size:
            limits["file_bytes"] = min(limits["file_bytes"], 1000 * cd.max_file_size)
        if cd.max_dir_size:
            limits["folder_bytes"] = min(limits["folder_bytes"], 1000 * cd.max_dir_size)
        return limits

    def _skip(self, name, is_dir):
        """nbgrader's CourseDirectory.ignore / include, as its do_copy applies them (not 'refused')."""
        cd = self.coursedir
        if cd.ignore and any(fnmatch.fnmatch(name, pattern) for pattern in cd.ignore):
            return True
        return not is_dir and bool(cd.include) and not any(fnmatch.fnmatch(name, p) for p in cd.include)

    def _dest_problem(self, student):
        """Why collecting into submitted/<student>/<assignment> is unsafe (a link there), or None."""
        cd = self.coursedir
        dest = cd.format_path(cd.submitted_directory, student, cd.assignment_id)
        for path in (os.path.dirname(dest), dest):
            try:
                mode = os.lstat(path).st_mode
            except FileNotFoundError:
                return None
            if not stat.S_ISDIR(mode):
                zh, en = KINDS[kind_of(mode)]
                return f"{path} 是{zh} ({path} is a {en})"
        return None

    def init_src(self):
        """nbgrader's init_src, tolerant of hostile inbound names (skipped with a warning, not fatal)."""
        from nbgrader.api import Gradebook, MissingEntry
        from nbgrader.utils import check_mode, parse_utc
        cd = self.coursedir
        if cd.course_id == "":
            self.fail("No course id specified. Re-run with --course flag.")
        self.course_path = os.path.join(self.root, cd.course_id)
        self.inbound_path = os.path.join(self.course_path, "inbound")
        if not os.path.isdir(self.inbound_path):
            self.fail("Course not found: {}".format(self.inbound_path))
        if not check_mode(self.inbound_path, read=True, execute=True):
            self.fail("You don't have read permissions for the directory: {}".format(self.inbound_path))
        student_id = cd.student_id if cd.student_id else "*"
        pattern = os.path.join(glob.escape(self.inbound_path), "{}+{}+*".format(student_id, cd.assignment_id))
        records = []
        for path in glob.glob(pattern):
            filename = os.path.basename(path)
            parts = filename.rsplit("+", 3)
            try:
                if len(parts) < 3 or parts[1] != cd.assignment_id:
                    raise ValueError("not <student>+<assignment>+<timestamp>")
                timestamp = parse_utc(parts[2])
            except (ValueError, OverflowError, TypeError) as e:
                self.log.warning("Skipping inbound entry with an invalid name %r: %s", filename, e)
                continue
            if not safe_id(parts[0]):
                self.log.warning("Skipping inbound entry %r: the student id %r is not a safe file name",
                                 filename, parts[0])
                continue
            problem = self._dest_problem(parts[0])
            if problem:
                self.log.error("Not collecting %s for student %s: %s", filename, parts[0], problem)
                continue
            records.append({"username": parts[0], "filename": filename, "timestamp": timestamp})
        usergroups = groupby(records, lambda item: item["username"])
        with Gradebook(cd.db_url, cd.course_id) as gb:
            try:
                self.duedate = gb.find_assignment(cd.assignment_id).duedate
            except MissingEntry:
                self.duedate = None
        self.src_records = []
        for group in usergroups.values():
            group = self._sort_by_timestamp(group)
            if self.duedate is not None and self.before_duedate:
                group = [r for r in group if r["timestamp"] <= self.duedate] or group
            self.src_records.append(group[0])

    def do_copy(self, src, dest, log=None):
        student = os.path.basename(src).rsplit("+", 3)[0]
        cd = self.coursedir
        file_mode, dir_mode = (0o660, 0o2770) if cd.groupshared else (0o600, 0o700)
        problem = self._dest_problem(student)
        if problem:  # init_src checked it; a link made since then
            self.log.error("Not collecting %s for student %s: %s", src, student, problem)
            return
        trusted = os.path.dirname(os.path.dirname(os.path.abspath(dest)))
        copier = _Copy(self._limits(), self._skip, file_mode, dir_mode, _check_timestamp)
        dfd = _make_folders(trusted, os.path.relpath(os.path.abspath(dest), trusted).split(os.sep), dir_mode)
        try:
            try:
                sfd = os.open(src, _OPEN_DIR)
            except OSError as e:
                try:
                    kind = kind_of(os.lstat(src).st_mode)
                except OSError:
                    kind = "other"
                copier.refuse(".", ("提交本身是符号链接，未复制 (the submission is a symbolic link: not copied)"
                                    if kind == "symlink" or e.errno == errno.ELOOP else
                                    f"提交不是文件夹，未复制 (the submission is not a folder: not copied): {e.strerror}"))
            else:
                try:
                    copier.tree(sfd, dfd)
                finally:
                    os.close(sfd)
        finally:
            os.close(dfd)
        if copier.refused:
            write_intake(dest, copier.refused, trusted, file_mode)
            for item in copier.refused:
                self.log.warning("Refused in the submission of %s: %s: %s", student, item["path"], item["why"])


# --- extracting an LMS download: zip_collect -----------------------------------------------------

def _member_path_problem(name):
    """Why an archive member's name is unsafe to extract (absolute, '..', NUL), or None."""
    if not name or "\x00" in name:
        return "文件名无效，未解压 (invalid member name: not extracted)"
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "绝对路径，未解压 (absolute path: not extracted)"
    if ".." in re.split(r"[/\\]", name):
        return "路径含 ..，未解压 (path with '..': not extracted)"
    return None


class SafeExtractor(ExtractorPlugin):
    """zip_collect's extractor that refuses what could escape or exhaust the extracted folder.

    Refused, never written: symlink, hard link and special members (a zip member's type is read
    from its external attributes), absolute and '..' paths, encrypted and sparse members,
    members over `max_member_bytes` or, above 1 MiB, compressed more than `max_ratio` times;
    a whole archive whose members or declared size go over `max_members` / `max_total_bytes`
    (counted over nested archives too); archives nested deeper than `max_nesting`. Non-archive
    files of the archive folder are copied only when they are regular files. Refusals that map
    to a student through the collector's named_regexp go to submitted/<student>/<assignment>/
    intake.json after the transfer; all are logged.
    """

    max_member_bytes = Integer(INTAKE_LIMITS["file_bytes"], help="Largest member extracted (bytes).").tag(config=True)
    max_total_bytes = Integer(INTAKE_LIMITS["archive_bytes"],
                              help="Most bytes extracted from one archive folder, nested archives included."
                              ).tag(config=True)
    max_members = Integer(INTAKE_LIMITS["archive_members"],
                          help="Most members of the archives of one archive folder.").tag(config=True)
    max_ratio = Integer(INTAKE_LIMITS["ratio"], help="Largest compression ratio of a member over 1 MiB."
                        ).tag(config=True)
    max_nesting = Integer(INTAKE_LIMITS["nesting"], help="Archives inside archives: the LMS download is 1."
                          ).tag(config=True)

    # -- bookkeeping
    def _refuse(self, shown, why, mapped=None):
        self._refused.append((shown, why, mapped))

    def _groups(self, path):
        """What the course's collector reads from an extracted file's path ({} when nothing)."""
        collector = getattr(self.parent, "collector_plugin_inst", None)
        regexp = getattr(collector, "named_regexp", "") if path else ""
        try:
            match = re.match(regexp, path) if regexp else None
        except re.error:
            match = None
        return match.groupdict() if match else {}

    def _student_of(self, path):
        student = self._groups(path).get("student_id")
        return student if safe_id(student) else None

    def _report(self):
        per_student = defaultdict(list)
        for shown, why, mapped in self._refused:
            student = self._student_of(mapped)
            self.log.warning("Refused from the archive%s: %s: %s",
                             f" (student {student})" if student else " (no student)", shown, why)
            if student:
                per_student[student].append({"path": shown, "why": why})
        app = self.parent
        if not per_student:
            return
        if not hasattr(app, "process_extracted_files") or not hasattr(app, "coursedir"):
            return
        original = app.process_extracted_files

        def process_extracted_files():
            original()
            cd = app.coursedir
            for student, items in per_student.items():
                folder = cd.format_path(cd.submitted_directory, student, cd.assignment_id)
                try:
                    write_intake(folder, items)
                except OSError as e:
                    self.log.error("Could not note what was refused for %s: %s", student, e)
        app.process_extracted_files = process_extracted_files  # after the transfer, which clears the folder

    # -- writing
    def _write(self, root_fd, parts, stream, limit):
        """Write `stream` to root/parts (new file, no link followed); return bytes written or raise Refused."""
        parent = _make_folders(root_fd, parts[:-1])
        try:
            out = os.open(parts[-1], _CREATE, 0o600, dir_fd=parent)
            written = 0
            try:
                while True:
                    data = stream.read(min(1 << 20, limit + 1 - written))
                    if not data:
                        break
                    written += len(data)
                    if written > limit:
                        raise Refused(too_large(written, limit).replace("复制", "解压").replace("copied", "extracted"),
                                      "too_large")
                    os.write(out, data)
            except BaseException:
                os.close(out)
                os.unlink(parts[-1], dir_fd=parent)
                raise
            os.close(out)
            return written
        finally:
            os.close(parent)

    def _budget_left(self):
        return self.max_total_bytes - self._bytes

    # -- members
    def _extract_archive(self, path, dest, depth, shown):
        """Extract the archive at `path` into the new folder `dest`."""
        if depth > self.max_nesting:
            self._refuse(shown, f"压缩包嵌套过深，未解压 (archive nested too deep: not extracted): > {self.max_nesting}")
            return
        try:
            if zipfile.is_zipfile(path):
                with zipfile.ZipFile(path) as zf:
                    self._extract_zip(zf, dest, depth, shown)
            elif tarfile.is_tarfile(path):
                with tarfile.open(path, "r:*") as tf:
                    self._extract_tar(tf, dest, depth, shown)
            else:
                self._refuse(shown, "不是可读的 zip 或 tar 压缩包，未解压 (not a readable zip or tar archive)")
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, ValueError) as e:
            self._refuse(shown, f"压缩包损坏，已停止解压 (corrupt archive, extraction stopped): {type(e).__name__}: {e}"[:300])

    def _member_problem(self, name, kind, size, compressed=None):
        why = _member_path_problem(name)
        if why:
            return why
        if kind not in ("file", "dir"):
            zh, en = KINDS.get(kind, KINDS["other"])
            return f"{zh}，未解压 ({en}: not extracted)"
        if kind == "file" and size > self.max_member_bytes:
            return f"文件过大，未解压 (member too large: not extracted): {size} > {self.max_member_bytes} bytes"
        if kind == "file" and compressed is not None and size > 2 ** 20 and size > self.max_ratio * max(compressed, 1):
            return (f"压缩比过高，未解压 (compressed {size // max(compressed, 1)} times, a zip bomb?: not extracted): "
                    f"{size} bytes from {compressed}")
        return None

    def _extract_zip(self, zf, dest, depth, shown):
        infos = zf.infolist()
        declared = sum(i.file_size for i in infos)
        if self._members + len(infos) > self.max_members:
            self._refuse(shown, f"压缩包成员过多，整个未解压 (too many members: archive not extracted): "
                                f"{len(infos)} > {self.max_members - self._members}")
            return
        if declared > self._budget_left():
            self._refuse(shown, f"解压后总大小超过上限，整个未解压 (uncompressed size over the limit: archive not "
                                f"extracted): {declared} > {self._budget_left()} bytes")
            return
        self._members += len(infos)
        os.makedirs(dest, exist_ok=True)
        root = os.open(dest, _OPEN_DIR)
        try:
            for info in infos:
                mode = info.external_attr >> 16
                kind = "dir" if info.is_dir() else kind_of(mode) if stat.S_IFMT(mode) else "file"
                if info.flag_bits & 0x1:
                    why = "加密的成员，未解压 (encrypted member: not extracted)"
                else:
                    why = self._member_problem(info.filename, kind, info.file_size, info.compress_size)
                self._place(root, dest, depth, shown, info.filename, kind, why, lambda: zf.open(info))
        finally:
            os.close(root)

    def _extract_tar(self, tf, dest, depth, shown):
        os.makedirs(dest, exist_ok=True)
        root = os.open(dest, _OPEN_DIR)
        try:
            for member in tf:  # streamed: the declared sizes bound what is read
                self._members += 1
                if self._members > self.max_members:
                    self._refuse(shown, f"压缩包成员过多，其余未解压 (too many members: the rest not extracted): "
                                        f"> {self.max_members}")
                    return
                if member.size > self._budget_left():
                    self._refuse(shown, "解压后总大小超过上限，其余未解压 (uncompressed size over the limit: the rest "
                                        f"not extracted): {member.size} > {self._budget_left()} bytes")
                    return
                kind = ("dir" if member.isdir() else "symlink" if member.issym() else "hardlink" if member.islnk()
                        else "chardev" if member.ischr() else "blockdev" if member.isblk()
                        else "fifo" if member.isfifo() else "file" if member.isreg() else "other")
                if member.type == tarfile.GNUTYPE_SPARSE or getattr(member, "sparse", None):
                    why = "稀疏文件，未解压 (sparse member: not extracted)"
                else:
                    why = self._member_problem(member.name, kind, member.size)
                if why:
                    self._bytes += member.size  # skipping it reads it all the same
                self._place(root, dest, depth, shown, member.name, kind, why, lambda: tf.extractfile(member))
        finally:
            os.close(root)

    def _place(self, root, dest, depth, shown, name, kind, why, open_stream):
        """One member of an archive: refused with `why`, a folder made, or a file written from
        open_stream() (without following a link on the way: _member)."""
        if why:
            self._refuse(f"{shown}/{name}", why, os.path.join(dest, name))
            return
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if not parts:
            return
        if kind == "dir":
            os.close(_make_folders(root, parts))
            return
        with contextlib.closing(open_stream()) as stream:
            self._member(root, parts, stream, dest, depth, f"{shown}/{name}")

    def _member(self, root, parts, stream, dest, depth, shown):
        mapped = os.path.join(dest, *parts)
        # the name zip_collect would give it in submitted/ (nbgrader: file_id's stem + the file's extension)
        collected = os.path.splitext(self._groups(mapped).get("file_id") or "")[0] + os.path.splitext(mapped)[1]
        if collected in RESERVED_NAMES:  # it would pass for the grader's own file
            self._refuse(shown, f"{collected} 是评分系统保留的文件名，未解压 "
                                "(a name the grader reserves: not extracted)", mapped)
            return
        try:
            written = self._write(root, parts, stream, min(self.max_member_bytes, self._budget_left()))
        except Refused as e:
            self._refuse(shown, e.reason, mapped)
            return
        except OSError as e:
            why = ("重复的文件名，未解压 (duplicate name: not extracted)" if e.errno == errno.EEXIST
                   else f"无法写入，未解压 (cannot write: not extracted): {e.strerror}")
            self._refuse(shown, why, mapped)
            return
        self._bytes += written
        stem, ext = os.path.splitext(parts[-1])
        if ext in self.zip_ext:  # an archive inside the archive: nbgrader extracts those too, we to a depth
            if os.path.splitext(stem)[1] == ".tar":
                stem = os.path.splitext(stem)[0]
            inner = os.path.join(os.path.dirname(mapped), stem)
            if depth + 1 > self.max_nesting:
                os.unlink(mapped)
                self._refuse(shown, f"压缩包嵌套过深，未解压 (archive nested too deep: not extracted): > {self.max_nesting}",
                             mapped)
            elif os.path.lexists(inner):
                self._refuse(shown, "解压目标已存在，未解压 (extraction folder exists: not extracted)", mapped)
            else:
                self._extract_archive(mapped, inner, depth + 1, shown)

    def extract(self, archive_path, extracted_path):
        """Extract the archives of `archive_path` (each into a folder of its name) and copy its other
        regular files into `extracted_path`, as nbgrader's ExtractorPlugin does, refusing what is unsafe."""
        self._refused, self._bytes, self._members = [], 0, 0
        if not os.listdir(archive_path):
            self.log.warning("No files found in directory: {}".format(archive_path))
            return
        for root, dirs, files in os.walk(archive_path):
            rel = os.path.relpath(root, archive_path)
            for name in sorted(dirs):
                if os.path.islink(os.path.join(root, name)):
                    self._refuse(os.path.normpath(os.path.join(rel, name)), not_copied("symlink"))
            extract_to = os.path.normpath(os.path.join(extracted_path, rel))
            os.makedirs(extract_to, exist_ok=True)
            for name in sorted(files):
                src = os.path.join(root, name)
                shown = os.path.normpath(os.path.join(rel, name))
                kind = kind_of(os.lstat(src).st_mode)
                if kind != "file":
                    self._refuse(shown, not_copied(kind), os.path.join(extract_to, name))
                    continue
                filename, ext = os.path.splitext(name)
                if ext in self.zip_ext:
                    fname, ext2 = os.path.splitext(filename)
                    if ext2 == ".tar":
                        filename = fname
                    self.log.info("Extracting from: {}".format(src))
                    self.log.info("  Extracting to: {}".format(os.path.join(extract_to, filename)))
                    self._extract_archive(src, os.path.join(extract_to, filename), 1, shown)
                    continue
                self.log.info("Copying from: {}".format(src))
                try:
                    sfd = os.open(root, _OPEN_DIR)
                    try:
                        data = read_regular(sfd, name, self.max_member_bytes)
                    finally:
                        os.close(sfd)
                    dfd = os.open(extract_to, _OPEN_DIR)
                    try:
                        out = os.open(name, _CREATE, 0o600, dir_fd=dfd)
                        try:
                            os.write(out, data)
                        finally:
                            os.close(out)
                    finally:
                        os.close(dfd)
                except Refused as e:
                    self._refuse(shown, e.reason, os.path.join(extract_to, name))
                except OSError as e:
                    self._refuse(shown, f"无法复制 (cannot copy): {e.strerror}", os.path.join(extract_to, name))
        self._report()


# --- the instructor's code in a submission ---------------------------------------------------------

#: nbgrader's region markers (release notebooks never hold them).
MARKER = re.compile(r"\b(?:BEGIN|END) (?:SOLUTION|HIDDEN TESTS)\b")
#: A line is distinctive from this many characters, whitespace removed.
MIN_DISTINCTIVE = 24


def _norm(line):
    return "".join(line.split())


def _cells(nb):
    """[(label, source)] of a notebook (NotebookNode, dict or JSON text) or [("text", text)]."""
    if isinstance(nb, (bytes, bytearray)):
        nb = nb.decode("utf-8", errors="replace")
    if isinstance(nb, str):
        try:
            parsed = json.loads(nb)
        except (ValueError, RecursionError):
            return [("text", nb)]
        if not isinstance(parsed, dict) or not isinstance(parsed.get("cells"), list):
            return [("text", nb)]
        nb = parsed
    out = []
    for i, cell in enumerate(nb.get("cells") or []):
        if not isinstance(cell, dict):
            continue
        src = cell.get("source", "")
        src = "".join(map(str, src)) if isinstance(src, list) else str(src)
        meta = cell.get("metadata") if isinstance(cell.get("metadata"), dict) else {}
        nbg = meta.get("nbgrader") if isinstance(meta.get("nbgrader"), dict) else {}
        out.append((str(nbg.get("grade_id") or f"#{i + 1}"), src))
    return out


def _regions(source_nb):
    """(secret: [(cell, what, line)], public lines) of the source notebook.

    Secret: lines of hidden-test regions (what="hidden_test"); comment lines of code solution
    regions and lines of markdown solution cells (what="solution"). The code of a solution is
    left out: a correct student may write the same line (it is the book's code).
    """
    if not isinstance(source_nb, dict):
        import nbformat
        source_nb = nbformat.read(str(source_nb), as_version=4)
    secret, public = [], []
    for i, cell in enumerate(source_nb.get("cells") or []):
        src = cell.get("source", "")
        src = "".join(src) if isinstance(src, list) else src
        nbg = (cell.get("metadata") or {}).get("nbgrader") or {}
        gid = nbg.get("grade_id") or f"#{i + 1}"
        solution_cell = bool(nbg.get("solution"))
        markdown = cell.get("cell_type") == "markdown"
        has_markers = "BEGIN SOLUTION" in src
        region = None
        for line in src.splitlines():
            if "BEGIN SOLUTION" in line:
                region = "solution"
                continue
            if "BEGIN HIDDEN TESTS" in line:
                region = "hidden_test"
                continue
            if "END SOLUTION" in line or "END HIDDEN TESTS" in line:
                region = None
                continue
            what = region or ("solution" if solution_cell and not has_markers else None)
            if what is None:
                public.append(line)
            elif what == "hidden_test":
                if not line.strip().startswith(("import ", "from ")):
                    secret.append((gid, what, line))
            elif markdown or line.strip().startswith("#"):
                secret.append((gid, what, line))
    return secret, public


def instructor_code(submission, source_notebook, release=None, public=()):
    """What of the instructor's hidden tests or solutions a submission contains: [] when nothing.

    `submission`: the student's notebook (NotebookNode, dict, JSON text or any text);
    `source_notebook`: the instructor's notebook (or its path); `release`: the student
    version (anything in it is public); `public`: other texts the students have (checks.py).
    Found are nbgrader's markers (BEGIN SOLUTION, BEGIN HIDDEN TESTS, ...) and distinctive
    lines of the source's hidden tests and solution comments / written answers (at least
    MIN_DISTINCTIVE characters without whitespace, found anywhere in a cell with whitespace
    removed, and in no public text). Returns [{"cell", "what", "lines", "excerpt"}] per cell
    and kind of finding: "what" is "marker", "hidden_test" or "solution"; "lines" how many;
    "excerpt" the first one, clipped.
    """
    secret, public_lines = _regions(source_notebook)
    public_text = "\n".join(_norm(line) for line in public_lines)
    if release is not None:
        public_text += "\n" + "\n".join(_norm(src) for _, src in _cells(release))
    public_text += "\n" + "\n".join(_norm(text) for text in public)
    candidates = {}
    for gid, what, line in secret:
        key = _norm(line)
        if len(key) >= MIN_DISTINCTIVE and key not in public_text and key not in candidates:
            candidates[key] = (what, line.strip())
    found = {}
    for label, src in _cells(submission):
        for line in src.splitlines():
            if MARKER.search(line) and _norm(line) not in public_text:
                entry = found.setdefault((label, "marker"), {"cell": label, "what": "marker", "lines": 0,
                                                             "excerpt": line.strip()[:80]})
                entry["lines"] += 1
        flat = _norm(src)
        for key, (what, line) in candidates.items():
            if key in flat:
                entry = found.setdefault((label, what), {"cell": label, "what": what, "lines": 0,
                                                         "excerpt": line[:80]})
                entry["lines"] += 1
    return list(found.values())


def describe_instructor_code(found, limit=3):
    """One line for the instructor: which cells, what, a short excerpt."""
    names = {"marker": "nbgrader 标记 (marker)", "hidden_test": "隐藏测试 (hidden test)",
             "solution": "参考答案 (solution)"}
    parts = [f"{f['cell']}: {names.get(f['what'], f['what'])} ×{f['lines']} «{f['excerpt'][:60]}»"
             for f in found[:limit]]
    if len(found) > limit:
        parts.append(f"… (+{len(found) - limit})")
    return "; ".join(parts)
