"""The class server (`make hub`, hub/): JupyterHub on loopback with real accounts, end to end in Chromium.

One test plays a whole assignment on a hub of its own (free port, its own roster of three
real Linux users, homes, exchange and state under a temporary folder, all removed at the
end): the instructor releases `channels` in the formgrader (inside JupyterLab: the iframe
that JupyterHub >= 4.1 forbids by default, nbgrader #1870); two students log in, fetch it,
put in their answers (one correct, one off by one), press Validate and submit; the
instructor collects, autogrades with `python -m grading grade` (sandboxed, as the
instructor's OS user), grades the written answer in the formgrader and releases feedback;
each student fetches feedback and sees his own score and comment, nobody else's. The
expected scores come from grading the same notebooks in a scratch course (tests/conftest.py)
so a change of the scoring cannot make them stale. Then the hub is stopped and started
again: gradebook, submissions and feedback are still there. Students cannot read each
other's files, the exchange's submissions, the course's source/ or the gradebook.

Clicks where a click is what a user does first; nbgrader's REST handlers (called from the
logged-in page, as the Lab extension does) where a click would only repeat one. Screenshots
go to test-artifacts/hub-*.png (docs/img/ has copies for the README).
"""
import csv
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import pytest
import yaml

from conftest import ASSIGNMENT, ROOT, VENV_BIN, free_port, make_course, require, venv_env
from expect import MAX_WITH_EXTRA
from test_slides_browser import ARTIFACTS, launch, require_browser

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from grading.fill import fill_notebook  # noqa: E402

COURSE_ID = "d2l-channels"
HUBCTL = ROOT / "hub" / "hubctl.py"
RELEASE_NB = ROOT / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
SAMPLES = ROOT / "samples" / "class"
# The test's own class: names that no real class uses (they are created and deleted here).
INSTRUCTOR = "hbteacher"
STUDENTS = {"hbzhang": "ref_reference", "hbli": "off_by_one"}  # correct / the typical off-by-one mistake
MANUAL = {"hbzhang": 2.0, "hbli": 1.0}  # points given for the written answer in the formgrader
COMMENT = {"hbzhang": "讲得清楚：逐像素的全连接层。", "hbli": "Say why 1×1 mixes channels only."}
GROUP = "channels-hubtest"
VIEWPORT = {"width": 1280, "height": 800}
WRITTEN = "written_1x1"

API_JS = """async ([method, url, body]) => {
  const m = document.cookie.match(/(?:^|;\\s*)_xsrf=([^;]*)/);
  const headers = {'Content-Type': 'application/json'};
  if (m) headers['X-XSRFToken'] = m[1];
  const reply = await fetch(url, {method, headers, credentials: 'same-origin',
                                  body: body === null ? undefined : JSON.stringify(body)});
  return {status: reply.status, text: await reply.text()};
}"""


def points_of_release():
    """(total, manual) points of the release notebook's graded cells."""
    nb = nbformat.read(RELEASE_NB, as_version=4)
    total = manual = 0.0
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade"):
            total += float(meta.get("points", 0))
            if cell.cell_type == "markdown":
                manual += float(meta.get("points", 0))
    return total, manual


def filled(student):
    return fill_notebook(RELEASE_NB, SAMPLES / f"{STUDENTS[student]}.py")


def submission_scores(gradebook_file):
    """{student: (score, max_score)} from a gradebook (read from a copy: nothing is written there)."""
    from nbgrader.api import Gradebook
    copy = Path(tempfile.mkdtemp()) / "gradebook.db"
    shutil.copy2(gradebook_file, copy)
    try:
        with Gradebook(f"sqlite:///{copy}") as gb:
            return {s.student.id: (s.score, s.max_score) for s in gb.assignment_submissions(ASSIGNMENT)}
    finally:
        shutil.rmtree(copy.parent)


# --- The class's hub -------------------------------------------------------------------------------

class Hub:
    def __init__(self, base):
        self.base = base
        self.port = free_port()
        self.env = venv_env(HUB_STATE=str(base / "state"), HUB_HOMES=str(base / "home"),
                            HUB_EXCHANGE=str(base / "exchange"), HUB_ROSTER=str(base / "roster.csv"),
                            HUB_GROUP=GROUP, HUB_PORT=str(self.port))
        self.url = f"http://localhost:{self.port}"

    def ctl(self, command, timeout=300):
        start = time.monotonic()
        proc = subprocess.run([sys.executable, str(HUBCTL), command], env=self.env, capture_output=True,
                              text=True, timeout=timeout)
        assert proc.returncode == 0, f"hubctl {command} failed:\n{proc.stdout}\n{proc.stderr}\n{self.log()}"
        return proc.stdout, time.monotonic() - start

    def log(self):
        log = self.base / "state" / "hub" / "jupyterhub.log"
        return log.read_text(errors="replace")[-4000:] if log.exists() else ""

    def passwords(self):
        with open(self.base / "state" / "hub" / "logins.csv", newline="") as f:
            return {row["username"]: row["password"] for row in csv.DictReader(f)}

    def home(self, user):
        return Path(pwd.getpwnam(user).pw_dir)

    @property
    def course(self):
        return self.home(INSTRUCTOR) / COURSE_ID

    def user_url(self, user, path=""):
        return f"http://{user}.localhost:{self.port}/user/{user}/{path}"


def users_processes(users):
    uids = set()
    for user in users:
        try:
            uids.add(pwd.getpwnam(user).pw_uid)
        except KeyError:
            pass
    pids = []
    for proc_dir in Path("/proc").glob("[0-9]*"):
        try:
            if proc_dir.stat().st_uid in uids:
                pids.append(int(proc_dir.name))
        except (OSError, ValueError):
            pass
    return pids


def remove_class(hub, users):
    """Undo what hubctl did for the test class: processes, accounts, ACL entries, group."""
    import signal
    for pid in users_processes(users):  # only processes of the test's own accounts
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    for user in users:
        subprocess.run(["userdel", "--remove", user], capture_output=True)
    sys.path.insert(0, str(ROOT / "hub"))
    import hubctl
    for target in hubctl.python_paths(hubctl.settings()):
        for folder in [target, *target.parents]:
            acl = subprocess.run(["getfacl", "-p", str(folder)], capture_output=True, text=True).stdout
            if f"group:{GROUP}:" in acl:
                subprocess.run(["setfacl", "-x", f"g:{GROUP}", str(folder)], capture_output=True)
    subprocess.run(["groupdel", GROUP], capture_output=True)


@pytest.fixture(scope="module")
def hub():
    require(hasattr(os, "geteuid") and os.geteuid() == 0,
            "the hub test creates Linux users: run it as root (CI does)")
    require_browser()
    require((ROOT / "node_modules" / ".bin" / "configurable-http-proxy").exists(),
            "configurable-http-proxy is not installed: npm ci")
    require(shutil.which("setfacl") or os.stat("/root").st_mode & 0o001, "setfacl (Debian: acl) is missing")
    from grading.jail.sandbox import sandbox_status
    ok, reason = sandbox_status()
    require(ok, f"no grading sandbox: {reason}")
    base = Path(tempfile.mkdtemp(prefix="channels-hub-", dir="/tmp"))
    os.chmod(base, 0o755)  # the homes and the exchange are inside: users must reach them
    (base / "roster.csv").write_text("username,role,name\n" + f"{INSTRUCTOR},instructor,Test instructor\n"
                                     + "".join(f"{s},student,Test student {s}\n" for s in STUDENTS))
    h = Hub(base)
    users = [INSTRUCTOR, *STUDENTS]
    try:
        yield h
    finally:
        subprocess.run([sys.executable, str(HUBCTL), "stop"], env=h.env, capture_output=True, timeout=120)
        remove_class(h, users)
        shutil.rmtree(base, ignore_errors=True)


# --- Browser helpers -----------------------------------------------------------------------------------

def log_in(browser, hub, user):
    """A browser context of its own, logged in as `user`, on the user's JupyterLab; returns the page."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.goto(f"{hub.url}/hub/login")
    page.fill("#username_input", user)
    page.fill("#password_input", hub.passwords()[user])
    page.click("#login_submit")
    # JupyterLab is up with the nbgrader extension (the launcher may not show: Lab restores the workspace)
    page.wait_for_selector(".lm-MenuBar-itemLabel:text-is('Nbgrader')", timeout=240_000)
    assert page.url.startswith(hub.user_url(user)), page.url
    return page


def api(page, method, url, body=None, ok=(200, 201)):
    """Call a Jupyter/nbgrader REST handler from the logged-in page (cookie and XSRF as Lab does)."""
    reply = page.evaluate(API_JS, [method, url, body])
    assert reply["status"] in ok, f"{method} {url}: {reply['status']} {reply['text'][:2000]}"
    return json.loads(reply["text"]) if reply["text"] else None


def shot(page, name):
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"hub-{name}.png"))


def open_menu(page, menu, item):
    page.click(f".lm-MenuBar-itemLabel:text-is('{menu}')")
    page.click(f".lm-Menu-itemLabel:text-is('{item}')")


def formgrader_frame(page):
    """Nbgrader > Formgrader in JupyterLab: the formgrader inside Lab's iframe, rendered."""
    open_menu(page, "Nbgrader", "Formgrader")
    frame = page.frame_locator("#formgrader-iframe iframe")
    frame.locator(f"#main-table tr:has-text('{ASSIGNMENT}')").first.wait_for(timeout=60_000)
    return frame


def close_modal(frame):
    frame.locator(".modal-footer button:visible").first.click()
    frame.locator(".modal:visible").first.wait_for(state="hidden", timeout=30_000)


def as_user(user, code, cwd="/"):
    """Run Python as `user` (the venv's interpreter, which the class can use); return stdout."""
    proc = subprocess.run(["runuser", "-u", user, "--", str(VENV_BIN / "python"), "-c", code],
                          capture_output=True, text=True, cwd=cwd, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def scratch_grade(tmp):
    """Grade the same two notebooks with `python -m grading grade` in a scratch course (background)."""
    course = make_course(tmp / "scratch-course")
    for student in STUDENTS:
        dest = course / "submitted" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
        dest.parent.mkdir(parents=True)
        nbformat.write(filled(student), str(dest))
    proc = subprocess.Popen([sys.executable, "-m", "grading", "grade", "-q"], cwd=course, env=venv_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return course, proc


# --- The test ------------------------------------------------------------------------------------------

@pytest.mark.timeout(1200)
def test_class_on_the_hub(hub, tmp_path):
    sync_playwright = require_browser()
    total, manual_max = points_of_release()
    scratch, scratch_proc = scratch_grade(tmp_path)

    # make hub: users, exchange, course copy, hub up; it prints the URL and how to log in
    out, seconds = hub.ctl("start")
    assert seconds < 120, f"the hub took {seconds:.0f} s to come up"
    assert f"http://localhost:{hub.port}/" in out
    for user, password in hub.passwords().items():
        assert re.search(rf"\b{user}\s+{re.escape(password)}\b", out), out
    assert (hub.course / "nbgrader_config.py").exists()
    print(f"make hub: up in {seconds:.1f} s")

    with sync_playwright() as p:
        browser = launch(p)
        try:
            teacher = browser.new_context(viewport=VIEWPORT).new_page()
            teacher.goto(f"{hub.url}/hub/login")
            teacher.wait_for_selector("#login_submit")
            shot(teacher, "login")
            teacher.context.close()

            # Instructor: Nbgrader > Formgrader (Lab's iframe) > Release
            teacher = log_in(browser, hub, INSTRUCTOR)
            frame = formgrader_frame(teacher)
            shot(teacher, "formgrader-in-lab")
            frame.locator(f"#main-table tr:has-text('{ASSIGNMENT}') td.assign a").click()  # generate_assignment
            frame.locator(".modal:visible:has-text('Successfully created the student version')").wait_for(timeout=120_000)
            close_modal(frame)
            frame.locator(f"#main-table tr:has-text('{ASSIGNMENT}') td.release a").click()
            frame.locator(".modal:visible:has-text('Successfully released')").wait_for(timeout=60_000)
            close_modal(frame)
            released = hub.base / "exchange" / COURSE_ID / "outbound" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
            assert released.exists()

            # Student 1 (correct), in the browser: Assignment List > Fetch, answers, Validate, Submit
            first, second = STUDENTS
            page = log_in(browser, hub, first)
            open_menu(page, "Nbgrader", "Assignment List")
            page.locator("#released_assignments_list button:has-text('Fetch')").click(timeout=60_000)
            page.locator("#fetched_assignments_list button:has-text('Submit')").wait_for(timeout=60_000)
            api(page, "PUT", hub.user_url(first, f"api/contents/{ASSIGNMENT}/{ASSIGNMENT}.ipynb"),
                {"type": "notebook", "format": "json", "content": filled(first)})
            page.locator("#fetched_assignments_list a.assignment-notebooks-link").first.click()  # its notebooks
            page.locator("#fetched_assignments_list button:has-text('Validate')").first.click(timeout=30_000)
            dialog = page.locator(".jp-Dialog")
            dialog.wait_for(timeout=300_000)
            assert "Success! Your notebook passes all the tests." in dialog.inner_text()
            shot(page, "student-validate")
            page.locator(".jp-Dialog button").last.click()
            page.locator("#fetched_assignments_list button:has-text('Submit')").click()
            page.locator("#submitted_assignments_list .item_status, #submitted_assignments_list li"
                         ).first.wait_for(timeout=60_000)
            shot(page, "student-assignments")

            # Student 2 (off by one): the same through nbgrader's handlers
            page2 = log_in(browser, hub, second)
            course = {"assignment_id": ASSIGNMENT, "course_id": COURSE_ID}
            api(page2, "POST", hub.user_url(second, "assignments/fetch"), course)
            api(page2, "PUT", hub.user_url(second, f"api/contents/{ASSIGNMENT}/{ASSIGNMENT}.ipynb"),
                {"type": "notebook", "format": "json", "content": filled(second)})
            validation = api(page2, "POST", hub.user_url(second, "assignments/validate"),
                             {"path": f"{ASSIGNMENT}/{ASSIGNMENT}.ipynb"})
            value = validation["value"]
            value = json.loads(value) if isinstance(value, str) else value
            assert validation["success"] and value.get("failed"), validation  # the off-by-one fails a test
            api(page2, "POST", hub.user_url(second, "assignments/submit"), course)

            # Instructor: Collect (click), then autograde in the formgrader: nbgrader autograde with the
            # course's nbgrader_config.py, i.e. every notebook in the sandboxed kernel, as the instructor
            frame.locator(f"#main-table tr:has-text('{ASSIGNMENT}') td.collect a").click()
            frame.locator(".modal:visible:has-text('Successfully collected')").wait_for(timeout=60_000)
            close_modal(frame)
            assert sorted(p.name for p in (hub.course / "submitted").iterdir()) == sorted(STUDENTS)
            fg = hub.user_url(INSTRUCTOR, "formgrader")
            for student in STUDENTS:
                reply = api(teacher, "POST", f"{fg}/api/submission/{ASSIGNMENT}/{student}/autograde")
                assert reply["success"], reply
                assert "REFUSING" not in json.dumps(reply), reply

            # The expected autograded scores: the same notebooks graded in a scratch course
            scratch_out = scratch_proc.communicate(timeout=900)[0]
            assert scratch_proc.returncode == 0, scratch_out
            expected = submission_scores(scratch / "gradebook.db")
            # the correct answers get every autograded point, extra credit too (above the 100 % of `total`)
            assert expected[first] == (MAX_WITH_EXTRA, total) and MAX_WITH_EXTRA > total - manual_max
            assert expected[second][0] < total - manual_max
            assert submission_scores(hub.course / "gradebook.db") == expected

            # Instructor: the written answer in the formgrader (click for one, REST for the other)
            notebooks = {n["student"]: n for n in api(teacher, "GET", f"{fg}/api/submitted_notebooks/{ASSIGNMENT}/{ASSIGNMENT}")}
            grader = teacher.context.new_page()
            grader.goto(f"{fg}/submissions/{notebooks[first]['id']}/")
            grader.fill(f"input#{WRITTEN}", str(MANUAL[first]))
            grader.fill(f"#{WRITTEN}-comment", COMMENT[first])
            grader.keyboard.press("Tab")
            deadline = time.monotonic() + 30  # the formgrader saves on change
            while True:
                grades = api(teacher, "GET", f"{fg}/api/grades?submission_id={notebooks[first]['id']}")
                if next(g for g in grades if g["name"] == WRITTEN)["manual_score"] == MANUAL[first]:
                    break
                assert time.monotonic() < deadline, grades
                time.sleep(0.5)
            shot(grader, "formgrader-grading")
            grades = api(teacher, "GET", f"{fg}/api/grades?submission_id={notebooks[second]['id']}")
            written = next(g for g in grades if g["name"] == WRITTEN)
            api(teacher, "PUT", f"{fg}/api/grade/{written['id']}", dict(written, manual_score=MANUAL[second]))
            for student in STUDENTS:
                comments = api(teacher, "GET", f"{fg}/api/comments?submission_id={notebooks[student]['id']}")
                comment = next(c for c in comments if c["name"] == WRITTEN)
                if student == second:
                    api(teacher, "PUT", f"{fg}/api/comment/{comment['id']}", dict(comment, manual_comment=COMMENT[second]))
            final = {s: (expected[s][0] + MANUAL[s], total) for s in STUDENTS}
            grader.goto(f"{fg}/gradebook/{ASSIGNMENT}/{ASSIGNMENT}")
            grader.locator(f"tr:has-text('{second}')").first.wait_for(timeout=30_000)
            shot(grader, "formgrader-submissions")
            assert submission_scores(hub.course / "gradebook.db") == final

            # Instructor: feedback, generated and released through the formgrader's handlers
            for action in ("generate_feedback", "release_feedback"):
                reply = api(teacher, "POST", f"{fg}/api/assignment/{ASSIGNMENT}/{action}")
                assert reply["success"], reply

            # Each student fetches feedback and sees his own score and comment only
            page.reload()
            page.wait_for_selector(".lm-MenuBar-itemLabel:text-is('Nbgrader')", timeout=120_000)
            open_menu(page, "Nbgrader", "Assignment List")
            page.locator("#submitted_assignments_list button:has-text('Fetch Feedback')").first.click(timeout=60_000)
            page.locator("#submitted_assignments_list a:has-text('view feedback'), "
                         "#submitted_assignments_list button:has-text('Fetch Feedback')").first.wait_for()
            api(page2, "POST", hub.user_url(second, "assignments/fetch_feedback"), course)
            for student, student_page in [(first, page), (second, page2)]:
                listing = api(student_page, "GET", hub.user_url(student, f"api/contents/{ASSIGNMENT}/feedback"))
                assert len(listing["content"]) == 1, listing
                path = f"{listing['content'][0]['path']}/{ASSIGNMENT}.html"
                html = api(student_page, "GET", hub.user_url(student, f"api/contents/{path}?type=file&format=text"))["content"]
                score, max_score = final[student]
                assert f"Score: {score:.1f} / {max_score:.1f}" in html, (student, re.findall(r"Score: [^<]*", html))
                assert COMMENT[student] in html
                other = next(s for s in STUDENTS if s != student)
                assert COMMENT[other] not in html and other not in html
                assert "BEGIN HIDDEN TESTS" not in html
                if student == first:
                    view = student_page.context.new_page()
                    view.goto(hub.user_url(student, f"files/{path}"))
                    view.get_by_text(f"Score: {score:.1f} / {max_score:.1f}").first.wait_for(timeout=30_000)
                    shot(view, "student-feedback")
        finally:
            browser.close()

    check_privacy(hub)

    # Stop and start again: nothing is lost
    gradebook_before = submission_scores(hub.course / "gradebook.db")
    hub.ctl("stop")
    assert not [pid for pid in users_processes([INSTRUCTOR, *STUDENTS])], "servers left running after stop"
    _, seconds = hub.ctl("start")
    print(f"restart: up in {seconds:.1f} s")
    assert submission_scores(hub.course / "gradebook.db") == gradebook_before == final
    for student in STUDENTS:
        assert (hub.course / "submitted" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").exists()
        assert (hub.course / "feedback" / student / ASSIGNMENT / f"{ASSIGNMENT}.html").exists()
        assert list((hub.home(student) / ASSIGNMENT / "feedback").glob(f"*/{ASSIGNMENT}.html"))
    with sync_playwright() as p:
        browser = launch(p)
        try:
            teacher = log_in(browser, hub, INSTRUCTOR)
            fg = hub.user_url(INSTRUCTOR, "formgrader")
            rows = api(teacher, "GET", f"{fg}/api/submissions/{ASSIGNMENT}")
            assert {r["student"]: (r["score"], r["max_score"]) for r in rows} == final
        finally:
            browser.close()
    print(f"scores: {final}")


def check_privacy(hub):
    """A student cannot read another student's files, the exchange's submissions, source/ or the gradebook."""
    first, second = STUDENTS
    targets = {
        "other student's notebook": hub.home(first) / ASSIGNMENT / f"{ASSIGNMENT}.ipynb",
        "other student's home": hub.home(first),
        "exchange inbound": hub.base / "exchange" / COURSE_ID / "inbound",
        "exchange feedback": hub.base / "exchange" / COURSE_ID / "feedback",
        "course source": hub.course / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb",
        "gradebook": hub.course / "gradebook.db",
        "submitted": hub.course / "submitted",
        "hub state": hub.base / "state" / "hub" / "logins.csv",
    }
    for path in targets.values():
        assert path.exists(), path
    code = (
        "import json, os, sys\n"
        "out = {}\n"
        f"for name, path in {json.dumps({k: str(v) for k, v in targets.items()})}.items():\n"
        "    try:\n"
        "        (os.listdir if os.path.isdir(path) else (lambda p: open(p, 'rb').read(1)))(path)\n"
        "        out[name] = 'READABLE'\n"
        "    except PermissionError:\n"
        "        out[name] = 'denied'\n"
        "print(json.dumps(out))\n")
    seen = json.loads(as_user(second, code))
    assert set(seen.values()) == {"denied"}, seen
    # ... while the student's own submission and the released assignment are his to read
    assert as_user(second, f"print(len(open({str(hub.home(second) / ASSIGNMENT / (ASSIGNMENT + '.ipynb'))!r}).read()) > 0)").strip() == "True"


# --- The deployment files --------------------------------------------------------------------------------

@pytest.mark.fast
def test_z2jh_values_parse():
    """hub/z2jh-values.yaml is a Zero to JupyterHub values file with the settings docs/hub.md describes."""
    values = yaml.safe_load((ROOT / "hub" / "z2jh-values.yaml").read_text(encoding="utf-8"))
    assert values["hub"]["config"]["JupyterHub"]["authenticator_class"]
    single = values["singleuser"]
    assert single["image"]["name"] and single["image"]["tag"]
    assert "/srv/nbgrader/exchange" in json.dumps(single["storage"])
    assert "frame-ancestors" in json.dumps(values)
    assert values["proxy"]["https"]["enabled"] is True


def test_hub_files_and_docs():
    """The roster, the pins and the docs that `make hub` relies on."""
    rows = list(csv.DictReader((ROOT / "hub" / "roster.csv").open(newline="")))
    assert [r["role"] for r in rows].count("instructor") == 1 and len(rows) >= 3
    assert all(re.fullmatch(r"[a-z][a-z0-9-]{0,30}", r["username"]) for r in rows)
    assert "jupyterhub==" in (ROOT / "requirements.txt").read_text()
    package = json.loads((ROOT / "package.json").read_text())
    assert re.fullmatch(r"\d+\.\d+\.\d+", package["dependencies"]["configurable-http-proxy"])
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^hub:", makefile, re.M) and re.search(r"^hub-stop:", makefile, re.M)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make hub" in readme and "docs/hub.md" in readme
    for image in re.findall(r"\]\((docs/img/hub-[^)]+\.png)\)", readme):
        assert (ROOT / image).exists(), image
