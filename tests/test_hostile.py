"""Hostile and broken submissions, graded as on an instructor's Linux machine: sandbox for real.

The corpus (tests/hostile/corpus.py, one sample or file builder per case) is written into
one scratch course and graded in ONE batch with two workers, next to a correct submission
that must keep full marks. Each student must get exactly the outcome the corpus states:
the total, which test cells score 0, the flags and the status. The batch must finish, and
gradebook.db must not change after it (a submission leaves a detached process that tries).
Needs bubblewrap: skipped on a developer's machine without it, a failure in CI.
"""
import hashlib
import socket
import threading
import time

import nbformat

from expect import got_lost, normalise
from conftest import ASSIGNMENT, make_course, require
from hostile.corpus import CASES, answers_served, build, pwned_path

#: Per-cell timeout of this scratch course (the course's own is 120 s): the corpus has loops
#: that never end, and the grading of one notebook waits this long for each of them.
CELL_TIMEOUT = 10
#: How long after the batch the gradebook must stay as it was (the detached process of
#: `detached_writer` starts writing 3 s after it is spawned, then every second).
AFTERLIFE = 10


class AnswerServer:
    """A TCP server on the host's loopback that hands the reference answers to whoever connects.

    The `network` student tries to download its answers from it; inside the sandbox there is
    no route to it, so `connections` must stay 0.
    """

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.payload = answers_served()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            with conn:
                conn.sendall(self.payload)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def _gradebook_state(course):
    from grading.gradebook import scores as gradebook_scores
    db = course / "gradebook.db"
    return hashlib.sha256(db.read_bytes()).hexdigest(), gradebook_scores(course, ASSIGNMENT)


def test_hostile_batch(tmp_path):
    from grading.run.batch import grade
    from grading.jail.sandbox import sandbox_status
    ok, why = sandbox_status()
    require(ok, f"no working bubblewrap sandbox ({why})")

    course = make_course(tmp_path / "course")
    with open(course / "nbgrader_config.py", "a", encoding="utf-8") as config:
        config.write(f"\nc.Execute.timeout = {CELL_TIMEOUT}  # test_hostile: loops that never end\n")
    with AnswerServer() as server:
        students = build(course, port=server.port)
        results = {r.student: r for r in grade(course, ASSIGNMENT, jobs=2, progress=False)}
        before = _gradebook_state(course)
        time.sleep(AFTERLIFE)
        after = _gradebook_state(course)

    # The batch completed: everyone has a result, and it is what the gradebook holds.
    assert sorted(results) == sorted(students)
    for student, r in results.items():
        assert {g: auto for g, (auto, _, _) in before[1][student].items()} == r.scores, student
    # Nothing changed the gradebook after grading; nobody reached the host's network.
    assert after == before, "gradebook.db changed after the batch ended (a leftover process?)"
    assert server.connections == 0, "a submission reached the host's loopback from the sandbox"

    problems = []
    for case in CASES:
        r, e = results[case.student], case.expect
        auto = sum(r.scores[t] for t in r.tests)
        got = (auto, got_lost(r), set(r.flags), r.status)
        want = (e.total, normalise(e.lost), e.flags, e.status)
        if got != want:
            problems.append(
                f"{case.student}: expected {e.total:g} lost={sorted(normalise(e.lost))} flags={sorted(e.flags)} "
                f"{e.status}; got {auto:g} lost={sorted(got_lost(r))} flags={r.flags} {r.status}\n"
                f"    reasons: {r.reasons[:3]}\n    messages: { {k: v[:160] for k, v in r.messages.items()} }")
    assert not problems, f"{len(problems)} of {len(CASES)} cases graded wrongly:\n" + "\n".join(problems)

    # What three cases claim beyond their score (tests/test_render.py checks the payloads one by one).
    from grading.jail.sanitize import render_markdown
    from grading.nbsteps.execute import MAX_NOTEBOOK_OUTPUT_BYTES  # the course's cap (nbgrader_config.py)
    from test_render import dangers

    def autograded(student):
        return course / "autograded" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"

    assert not pwned_path(course).exists(), "recipe_writes_file: the replay wrote into the grader's package"
    release = (course / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb").stat().st_size
    flood = autograded("print_flood").stat().st_size
    # the cap counts the text; the notebook's JSON adds a few bytes a line (~8 % here)
    assert flood < 1.2 * MAX_NOTEBOOK_OUTPUT_BYTES + release, f"print_flood's autograded notebook: {flood} bytes"
    payloads = nbformat.read(autograded("html_payloads"), as_version=4)
    outputs = [o for c in payloads.cells for o in c.get("outputs", [])]
    assert outputs and {m for o in outputs for m in o.get("data", {})} <= {"text/plain", "text/html", "image/png"}
    found = [d for o in outputs for d in dangers(o.get("data", {}).get("text/html", ""))]
    found += [d for c in payloads.cells if c.cell_type == "markdown" for d in dangers(render_markdown(c.source))]
    assert found == [], f"html_payloads: what could still run in the instructor's browser: {found}"
