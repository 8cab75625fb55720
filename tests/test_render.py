"""What a student hands in cannot run script where it is shown, or flood the grader.

The threat: a student's outputs, markdown, attachments and cell metadata are shown in the
instructor's formgrader (served by the instructor's own Jupyter server, so a script there
could use the instructor's session) and in the feedback page. grading/jail/sanitize.py is
the one filter; CappedExecute (grading/nbsteps/execute.py) caps output per cell and per notebook;
the feedback page (grading/nbsteps/feedback.py, grading/nbsteps/templates/feedback_offline/) carries a
Content-Security-Policy, renders math offline with MathJax 3 inlined, and lays out tables.

Three layers:
- unit tests of sanitize_output / sanitize_markdown / sanitize_notebook / CappedExecute with
  real payloads, and that harmless content survives (seconds);
- one hostile submission graded through the real pipeline in a scratch course, its
  autograded notebook checked, its feedback opened in headless Chromium with every network
  request blocked (about two minutes);
- the formgrader's manual-grading page of that submission, served by a real Jupyter server
  and opened in Chromium: no payload ran, none could write into the course folder.
Browser tests skip without Chromium on a developer's machine and fail in CI.
"""
import asyncio
import base64
import copy
import html
import io
import json
import os
import re
import shutil
import time
from pathlib import Path

import nbformat
import pytest
from bs4 import BeautifulSoup

from conftest import ASSIGNMENT, ROOT, jupyter_server, make_course, nbgrader, require, sandbox_or_trusted
from grading.nbsteps import feedback
from grading.jail.sanitize import (MAX_IMAGE_BYTES, render_markdown, sanitize_markdown, sanitize_notebook,
                                   sanitize_output)
from test_slides_browser import ARTIFACTS, launch, require_browser

NB = f"{ASSIGNMENT}.ipynb"
PNG_1x1 = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")
SCRIPTY = re.compile(r"^\s*(javascript|vbscript|data|file)\s*:", re.I)


# --- an independent check of HTML: what could run script or load something ----------------------

def dangers(fragment):
    """Every tag or attribute of `fragment` (parsed as a browser would, roughly) that could run
    script or frame something: script-like elements, on* handlers, javascript:/data:/file: URLs
    (data: images excepted), style attributes and the like."""
    found = []
    for tag in BeautifulSoup(fragment, "html.parser").find_all(True):
        if tag.name in {"script", "iframe", "frame", "object", "embed", "svg", "math", "style", "link", "meta",
                        "base", "form", "template", "applet"}:
            found.append(f"<{tag.name}>")
        for name, value in tag.attrs.items():
            value = " ".join(value) if isinstance(value, list) else str(value)
            plain = re.sub(r"[\x00-\x20]", "", html.unescape(value))
            if name.lower().startswith("on") or name.lower() in {"srcdoc", "formaction", "xlink:href"}:
                found.append(f"{tag.name}[{name}]")
            elif name.lower() in {"href", "src", "action", "background", "poster"} and SCRIPTY.match(plain) \
                    and not re.match(r"data:image/(png|jpeg|gif)[;,]", plain, re.I):
                found.append(f"{tag.name}[{name}={value[:40]}]")
    return found


def js(tag):
    """The payload: mark the window, retitle the page, phone home, and (in the formgrader) write
    into the course folder with the instructor's session through the Jupyter REST API."""
    return ("window.__pwned='TAG';document.title='pwned';fetch('http://127.0.0.1:9/TAG').catch(function(){});"
            "var m=document.cookie.match(/_xsrf=([^;]*)/);fetch('/api/contents/pwned.txt',{method:'PUT',"
            "credentials:'same-origin',headers:{'Content-Type':'application/json',"
            "'X-XSRFToken':m?decodeURIComponent(m[1]):''},body:JSON.stringify({type:'file',format:'text',"
            "content:'TAG'})}).catch(function(){});").replace("TAG", tag)


def png_bytes(size=(40, 30)):
    """A real PNG, drawn by matplotlib as a student's plot would be."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(size[0] / 10, size[1] / 10), dpi=10)
    ax.plot([0, 1, 2], [0, 1, 0])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def display_data(data, metadata=None, kind="display_data"):
    out = {"output_type": kind, "data": data, "metadata": metadata or {}}
    if kind == "execute_result":
        out["execution_count"] = 1
    return nbformat.from_dict(out)


# --- sanitize_output ----------------------------------------------------------------------------

HTML_PAYLOADS = [
    "<script>window.__pwned=1</script>",
    "<img src=x onerror=\"window.__pwned=1\">",
    "<iframe src=\"javascript:parent.__pwned=1\"></iframe>",
    "<iframe srcdoc=\"<script>parent.__pwned=1</script>\"></iframe>",
    "<svg onload=\"window.__pwned=1\"><circle r=5 /></svg>",
    "<svg><script>window.__pwned=1</script></svg>",
    "<a href=\"javascript:window.__pwned=1\">click</a>",
    "<a href=\"jav&#x09;ascript:window.__pwned=1\">click</a>",
    "<math><mtext><table><mglyph><style><img src=x onerror=window.__pwned=1>",
    "<object data=\"data:text/html,<script>parent.__pwned=1</script>\"></object>",
    "<div style=\"background:url(javascript:window.__pwned=1)\" onmouseover=\"window.__pwned=1\">x</div>",
    "<form action=\"javascript:window.__pwned=1\"><button>go</button></form>",
    "<img src=\"data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+\">",
    "<scr<script>ipt>window.__pwned=1</scr</script>ipt>",
    "<<img src=x onerror=window.__pwned=1>",
    "<!--><img src=x onerror=window.__pwned=1>-->",
    "<noscript><p title=\"</noscript><img src=x onerror=window.__pwned=1>\">",
    "<base href=\"javascript:/\"><meta http-equiv=refresh content=\"0;url=javascript:window.__pwned=1\">",
    "<table><td background=\"javascript:window.__pwned=1\">x</td></table>",
]


@pytest.mark.fast
@pytest.mark.parametrize("payload", HTML_PAYLOADS)
def test_html_outputs_lose_everything_that_could_run(payload):
    out = sanitize_output(display_data({"text/html": payload, "text/plain": "<HTML object>"}))
    assert out.output_type == "display_data"
    assert set(out.data) <= {"text/html", "text/plain"}
    assert dangers(out.data.get("text/html", "")) == [], out.data
    assert "<script" not in out.data.get("text/html", "").lower() and "style=" not in out.data.get("text/html", "")
    assert out.data["text/plain"] == "<HTML object>"


@pytest.mark.fast
def test_a_dataframe_and_a_matplotlib_png_survive():
    frame = ('<div>\n<style scoped>\n    .dataframe tbody tr th:only-of-type { vertical-align: middle; }\n</style>\n'
             '<table border="1" class="dataframe">\n  <thead>\n    <tr style="text-align: right;">\n      <th></th>\n'
             '      <th>c_i</th>\n      <th>FLOPs</th>\n    </tr>\n  </thead>\n  <tbody>\n    <tr>\n      <th>0</th>\n'
             '      <td>3</td>\n      <td>1.2e+09</td>\n    </tr>\n  </tbody>\n</table>\n</div>')
    out = sanitize_output(display_data({"text/html": frame, "text/plain": "   c_i  FLOPs"}, kind="execute_result"))
    soup = BeautifulSoup(out.data["text/html"], "html.parser")
    assert [th.text for th in soup.find_all("th")] == ["", "c_i", "FLOPs", "0"]
    assert [td.text for td in soup.find_all("td")] == ["3", "1.2e+09"]
    assert "vertical-align" not in out.data["text/html"]  # the <style> went with its content
    assert out.output_type == "execute_result" and out.execution_count == 1

    png = png_bytes()
    b64 = base64.b64encode(png).decode()
    out = sanitize_output(display_data({"image/png": b64, "text/plain": "<Figure>"},
                                       metadata={"image/png": {"width": 400, "height": 300}}))
    assert base64.b64decode(out.data["image/png"]) == png
    assert out.metadata == {"image/png": {"width": 400, "height": 300}}
    inline = sanitize_output(display_data({"text/html": f'<p>plot:</p><img src="data:image/png;base64,{b64}" '
                                                        f'width="200" alt="plot">'}))
    img = BeautifulSoup(inline.data["text/html"], "html.parser").find("img")
    assert img["src"].startswith("data:image/png;base64,") and img["width"] == "200" and img["alt"] == "plot"


@pytest.mark.parametrize("mime, value", [
    ("application/javascript", "window.__pwned = 1"),
    ("image/svg+xml", '<svg xmlns="http://www.w3.org/2000/svg"><script>window.__pwned=1</script></svg>'),
    ("text/markdown", "<img src=x onerror=window.__pwned=1>"),
    ("text/latex", r"\href{javascript:alert(1)}{x}"),
    ("application/vnd.jupyter.widget-view+json", {"model_id": "abc", "version_major": 2}),
    ("application/x-unknown", "x"),
])
@pytest.mark.fast
def test_other_output_types_are_dropped(mime, value):
    out = sanitize_output(nbformat.from_dict({"output_type": "display_data", "data": {mime: value}, "metadata": {},
                                              "transient": {"display_id": "d"}}))
    assert list(out.data) == ["text/plain"] and "[grader]" in out.data["text/plain"] and mime in out.data["text/plain"]
    assert "transient" not in out and out.metadata == {}
    kept = sanitize_output(display_data({mime: value, "text/plain": "fallback"}))
    assert dict(kept.data) == {"text/plain": "fallback"}


@pytest.mark.fast
def test_images_must_be_what_they_say_and_small():
    svg_as_png = base64.b64encode(b'<svg onload="window.__pwned=1"/>').decode()
    huge = base64.b64encode(b"\x89PNG\r\n\x1a\n" + os.urandom(MAX_IMAGE_BYTES + 1)).decode()
    for data in ({"image/png": svg_as_png}, {"image/png": huge}, {"image/jpeg": PNG_1x1},
                 {"image/gif": "not base64 !!"}):
        out = sanitize_output(display_data(dict(data, **{"text/plain": "img"})))
        assert dict(out.data) == {"text/plain": "img"}, data.keys()
    # the width nbconvert writes unquoted into <img width=...>: numbers only
    out = sanitize_output(display_data(
        {"image/png": PNG_1x1}, metadata={"image/png": {"width": "1 onload=window.__pwned='w'", "height": 7,
                                                        "unconfined": True, "alt": "x\" onerror=\"y"},
                                          "filenames": {"image/png": "/etc/passwd"}, "width": "1 onload=x"}))
    assert out.metadata == {"image/png": {"height": 7}}
    page = export_html(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("plot()", outputs=[out])]))
    assert "onload" not in page


@pytest.mark.fast
def test_streams_and_errors_become_plain_strings():
    out = sanitize_output(nbformat.from_dict({"output_type": "stream", "name": "evil", "text": ["a", "b"]}))
    assert (out.name, out.text) == ("stdout", "ab")
    out = sanitize_output(nbformat.from_dict({"output_type": "error", "ename": 1, "evalue": None,
                                              "traceback": ["<script>x</script>", 2]}))
    assert (out.ename, out.evalue, out.traceback) == ("1", "", ["<script>x</script>", "2"])
    assert sanitize_output({"output_type": "no such thing"}) is None
    update = sanitize_output(nbformat.from_dict({"output_type": "update_display_data", "metadata": {},
                                                 "data": {"text/plain": "x"}, "transient": {"display_id": "a"}}))
    assert update.output_type == "display_data" and "transient" not in update


def export_html(nb, template="classic"):
    """nbconvert's HTML of `nb`, as the formgrader's template (classic) renders it."""
    from nbconvert import HTMLExporter
    body, _ = HTMLExporter(template_name=template).from_notebook_node(nb)
    return body


# --- sanitize_markdown ----------------------------------------------------------------------------

MARKDOWN_PAYLOADS = [
    "<script>window.__pwned=1</script>",
    "text <img src=x onerror=\"window.__pwned=1\"> more",
    "<iframe src=\"javascript:window.__pwned=1\"></iframe>",
    "<svg onload=\"window.__pwned=1\">",
    "<details open ontoggle=\"window.__pwned=1\">",
    "[click](javascript:window.__pwned=1)",
    "[click](JaVaScRiPt:window.__pwned=1 \"title\")",
    "[click]( <javascript:window.__pwned=1> )",
    "[click](jav&#x09;ascript:window.__pwned=1)",
    "[click](jav&#x0A;ascript:window.__pwned=1)",
    "[click](&#106;&#97;vascript:window.__pwned=1)",
    "[click](javascript&colon;window.__pwned=1)",
    "[click](java\\script:window.__pwned=1)",
    "[click](%6Aavascript:window.__pwned=1)",
    "[click](vbscript:msgbox(1))",
    "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "[click](file:///etc/passwd)",
    "![img](javascript:window.__pwned=1)",
    "![img](data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+)",
    "<javascript:window.__pwned=1>",
    "<JAVASCRIPT:window.__pwned=1>",
    "[ref]\n\n[ref]: javascript:window.__pwned=1",
    "[ref][r]\n\n[r]: jav&#x09;ascript:window.__pwned=1 \"t\"",
    "[ref][r]\n\n[r]:\n   <javascript:window.__pwned=1>",
    "![ref][r]\n\n[r]: data:text/html,<script>x</script>",
    "<p> $<script>window.__pwned=1</script>$",
    "<div>\n$$\n<img src=x onerror=window.__pwned=1>\n$$\n</div>",
    "`code` <b onclick=\"window.__pwned=1\">bold</b>",
    "<a href=\"javascript:window.__pwned=1\">x</a>",
    "<!-- <script>window.__pwned=1</script> -->",
    "<![CDATA[<script>window.__pwned=1</script>]]>",
    "<style>body{background:url(javascript:x)}</style>",
    "```\n</code></pre><script>window.__pwned=1</script>\n```",
    "~~~~\n<script>window.__pwned=1</script>\n~~~\nstill code\n~~~~\n<script>window.__pwned=2</script>",
    "<scr<script>ipt>window.__pwned=1</script>",
    "\\<script>window.__pwned=1</script>",
    "[x](<javascript:window.__pwned=1>)",
    "![x](attachment:evil.svg)",
    "- [ ] <img src=x onerror=window.__pwned=1>\n- item",
    "| a | b |\n|---|---|\n| <script>window.__pwned=1</script> | [x](javascript:y) |",
]


@pytest.mark.parametrize("payload", MARKDOWN_PAYLOADS)
def test_markdown_payloads_render_inert(payload):
    clean = sanitize_markdown(payload, attachments={"ok.png"})
    rendered = render_markdown(clean, {"ok.png"})
    assert dangers(rendered) == [], (clean, rendered)
    assert sanitize_markdown(clean, attachments={"ok.png"}) == clean  # idempotent: feedback runs it again
    # the page nbconvert makes of it (the formgrader's template) has nothing of the payload that runs
    cell = nbformat.v4.new_markdown_cell(clean)
    page = BeautifulSoup(export_html(nbformat.v4.new_notebook(cells=[cell])), "html.parser")
    body = page.find(class_="text_cell_render")
    assert dangers(str(body)) == []


HARMLESS = [
    r"输入 $\mathbf{X}$ 的形状为 $c_i\times n_h\times n_w$，输出 $$\mathbf{Y} = \sum_{k} \mathbf{X}_k \star \mathbf{K}_k$$",
    "| 题 | 内容 | 分 |\n|:--|:--|--:|\n| 1 | `corr2d` | 3 |\n| 2 | $c_i < c_o$ | 2 |",
    "**粗体**、*斜体*、~~删除~~\n\n1. 第一\n2. 第二\n   - 嵌套\n\n> 引用",
    "```python\nif a < b and c > d:\n    print('<b>')\n```",
    "见 [D2L](https://d2l.ai/chapter_convolutional-neural-networks/channels.html) 与 <https://d2l.ai> 或 <mailto:a@b.cn>",
    "a<sub>i</sub> 和 x<sup>2</sup><br>下一行，`a<b`，$a<b$",
    "![图](attachment:ok.png) ![远程](https://d2l.ai/x.png) [#锚点](#intro)",
    r"\begin{aligned} Y &= XW \\ b &= 0 \end{aligned}",
]


@pytest.mark.fast
@pytest.mark.parametrize("source", HARMLESS)
def test_harmless_markdown_is_kept_as_written(source):
    assert sanitize_markdown(source, attachments={"ok.png"}) == source


@pytest.mark.fast
def test_math_and_tables_still_render():
    rendered = render_markdown(sanitize_markdown(HARMLESS[0] + "\n\n" + HARMLESS[1]))
    soup = BeautifulSoup(rendered, "html.parser")
    assert r"$\mathbf{X}$" in soup.text and [th.text for th in soup.find_all("th")] == ["题", "内容", "分"]


@pytest.mark.parametrize("kind, text", [
    ("html", "<a " * 170_000), ("html", "<!--" * 130_000), ("html", "<" * 500_000), ("html", "<!x" * 170_000),
    ("markdown", "\\begin{x}" * 20_000), ("markdown", "<p>\n`" + "<a " * 10_000 + "`"), ("markdown", "<" * 100_000),
])
def test_pathological_input_costs_no_more_than_a_moment(kind, text):
    """Python's HTMLParser and nbconvert's markdown renderer take quadratic time on some texts;
    a student must not be able to stall the grader (or the formgrader) with one."""
    start = time.monotonic()
    if kind == "html":
        out = sanitize_output(display_data({"text/html": text}))
        assert dangers(out.data.get("text/html", "")) == []
    else:
        out = sanitize_markdown(text)
        render_markdown(out)
    assert time.monotonic() - start < 5


# --- sanitize_notebook --------------------------------------------------------------------------------

def _release_cell(cell, **flags):
    cell.metadata["nbgrader"] = dict({"grade": False, "solution": False, "locked": True, "schema_version": 3,
                                      "grade_id": cell.id}, **flags)
    return cell


@pytest.mark.fast
def test_sanitize_notebook_cleans_the_students_cells_and_keeps_the_pipelines():
    from grading.nbsteps.verdicts import verdict_outputs
    v4 = nbformat.v4
    intro = _release_cell(v4.new_markdown_cell("<b>instructor's</b> <details>kept</details>", id="intro"))
    intro.metadata["tags"] = ["release-tag"]
    answer = _release_cell(v4.new_markdown_cell("<script>window.__pwned=1</script> $\\mathbf{X}$ ![a](attachment:a.svg)"
                                                " ![b](attachment:b.png)", id="written"),
                           solution=True, grade=True, locked=False, points=2)
    answer["attachments"] = {"a.svg": {"image/svg+xml": base64.b64encode(b"<svg onload='x'/>").decode()},
                             "b.png": {"image/png": PNG_1x1}}
    own = v4.new_code_cell("display(HTML(...))", id="own-1", outputs=[
        display_data({"text/html": "<script>x</script><b>ok</b>", "application/javascript": "x"})])
    own.metadata = {"tags": ['x" onmouseover="window.__pwned=1'], "jupyter": {"source_hidden": True},
                    "raw_mimetype": "text/html"}
    raw = v4.new_raw_cell("<script>window.__pwned=1</script><i>raw</i>", id="own-raw")
    verdict = verdict_outputs({"score": 1, "max": 3, "message": "", "parts": [
        {"label": "数值 <values>", "points": 2, "passed": False, "message": "<script>alert(1)</script>",
         "category": "wrong_values"},
        {"label": "规则", "points": 1, "passed": True, "message": ""}]})
    test = _release_cell(v4.new_code_cell("check()", id="test_x", outputs=verdict), grade=True, points=3)
    released_code = _release_cell(v4.new_code_cell("import torch", id="imports", outputs=[
        display_data({"application/javascript": "window.__pwned=1", "text/plain": "js"})]))
    nb = v4.new_notebook(cells=[intro, answer, own, raw, test, released_code])
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    before_test = json.dumps(test, sort_keys=True)

    removed = sanitize_notebook(nb)

    assert intro.source.startswith("<b>instructor's</b> <details>") and intro.metadata.tags == ["release-tag"]
    assert "<script" not in answer.source and r"$\mathbf{X}$" in answer.source
    assert list(answer.attachments) == ["b.png"] and "attachment:a.svg" not in answer.source
    assert answer.metadata.nbgrader.grade_id == "written"  # the release's metadata stays
    assert own.metadata == {} and own.outputs[0].data["text/html"] == "<b>ok</b>"
    assert set(own.outputs[0].data) == {"text/html", "text/plain"}  # a line says what went
    assert "<script" not in raw.source and "<i>raw</i>" in raw.source
    assert json.dumps(test, sort_keys=True) == before_test  # the verdict table: the pipeline's own
    assert "style='color:" in test.outputs[0].data["text/html"] and "&lt;script&gt;" in test.outputs[0].data["text/html"]
    assert dict(released_code.outputs[0].data) == {"text/plain": "js"}  # outputs of release cells are the kernel's
    assert "widgets" not in nb.metadata
    text = "\n".join(removed)
    for what in ("application/javascript", "text/html <script>", "attachment image/svg+xml", "cell metadata",
                 "widget state"):
        assert what in text, (what, removed)
    page = BeautifulSoup(export_html(nb), "html.parser")
    assert [d for el in page.find_all(class_="cell") for d in dangers(str(el))] == []


@pytest.mark.fast
def test_the_fallback_notebook_is_sanitized_too(tmp_path):
    """When nbgrader fails, grade_one.write_fallback writes the feedback notebook: its header
    quotes a reason that may name the student's files, and it holds the student's cells."""
    from grading.course import Course
    from grading.run.grade_one import write_fallback
    from grading.rebuild import rebuild
    course = Course(make_course(tmp_path / "course"), ASSIGNMENT)
    nb = copy.deepcopy(course.release)
    answer = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "written_1x1")
    answer.source = "<img src=x onerror=window.__pwned=1> [x](javascript:window.__pwned=2) $\\mathbf{X}$"
    own = nbformat.v4.new_markdown_cell("<script>window.__pwned=3</script>", id="mine")
    own.metadata["tags"] = ['" onmouseover="window.__pwned=4']
    nb.cells.insert(3, own)
    rebuilt, _ = rebuild(nb, course.release)
    write_fallback(course, "s", rebuilt, "找到多个 notebook: <img src=x onerror=window.__pwned=5>.ipynb", None)
    out = nbformat.read(course.autograded("s") / course.notebook, as_version=4)
    assert out.cells[0].id == "grading-failure" and "自动评分没有完成" in out.cells[0].source
    for cell in out.cells:
        if cell.cell_type == "markdown":
            assert dangers(render_markdown(cell.source)) == [], cell.source
    mine = next(c for c in out.cells if "window.__pwned=3" in c.source)
    assert mine.metadata == {}
    assert [d for el in BeautifulSoup(export_html(out), "html.parser").find_all(class_="cell")
            for d in dangers(str(el))] == []


@pytest.mark.fast
def test_the_feedback_page_allows_only_its_own_scripts(tmp_path):
    without = feedback.page_resources(None)
    assert without["scripts"] == [] and "script-src 'none'" in without["csp"] and not without["math"]
    step = feedback.OfflineFeedbackPage(mathjax=str(tmp_path / "missing" / "tex-svg.js"))
    _, resources = step.preprocess(nbformat.v4.new_notebook(), {})
    assert resources["offline_page"]["scripts"] == []  # no MathJax: math stays TeX, no script at all
    fake = tmp_path / "tex-svg.js"
    fake.write_text("window.fake = '</script><script>alert(1)</script>';")
    page = feedback.page_resources(fake)
    assert page["math"] and len(page["scripts"]) == 2 and "</script" not in page["scripts"][1]
    assert page["csp"].count("'sha256-") == 2 and all(feedback.script_hash(s) in page["csp"] for s in page["scripts"])
    assert "default-src 'none'" in page["csp"] and "'unsafe-inline'" not in page["csp"].split("script-src")[1]
    for needle in ('"autoload"', '"require"', "href"):  # MathJax loads nothing at run time, no \\href
        assert needle in feedback.MATHJAX_CONFIG


@pytest.mark.fast
def test_the_formgrader_page_loads_nothing_from_a_cdn(tmp_path):
    """The formgrader's manual-grading page, as the course configures nbgrader's exporter:
    nbgrader's page (its scripts, score buttons) with MathJax inlined, no CDN."""
    from nbconvert.exporters import HTMLExporter
    from nbgrader.server_extensions.formgrader import handlers
    from traitlets.config import Config
    from grading.nbsteps import formgrade
    c = Config()
    c.HTMLExporter.template_name = "formgrade"  # what nbgrader's FormgradeExtension sets, then the course's config
    c.HTMLExporter.extra_template_basedirs = [handlers.template_path]
    formgrade.configure_exporter(c, tmp_path)
    fake = tmp_path / "tex-svg.js"
    fake.write_text("window.fakeMathJax = 1;")
    c.FormgradePage.mathjax = str(fake)
    resources = {"assignment_id": ASSIGNMENT, "notebook_id": ASSIGNMENT, "submission_id": "s1", "index": 0,
                 "total": 1, "base_url": "/user/t", "student": "s", "last_name": None, "first_name": None,
                 "notebook_path": f"autograded/s/{ASSIGNMENT}/{ASSIGNMENT}.ipynb"}
    page, _ = HTMLExporter(config=c).from_filename(str(ROOT / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"),
                                                   resources=resources)
    soup = BeautifulSoup(page, "html.parser")
    sources = [s["src"] for s in soup.find_all("script", src=True)]
    assert sources and all(src.startswith("/user/t/formgrader/static/") for src in sources), sources
    inline = [s.string or "" for s in soup.find_all("script", src=False)]
    assert "window.fakeMathJax = 1;" in inline and formgrade.STARTUP_SIGNAL in inline
    assert inline.index(formgrade.STARTUP_SIGNAL) > inline.index("window.fakeMathJax = 1;")
    assert "cdnjs" not in page and soup.select("button.full-credit")  # nbgrader's page, whole


# --- CappedExecute: per cell, per notebook, sanitized ----------------------------------------------------

class _FakeKernel:
    def __init__(self):
        self.interrupts = 0

    async def interrupt_kernel(self):
        self.interrupts += 1


def _msg(kind, content, display_id=None):
    if display_id:
        content = dict(content, transient={"display_id": display_id})
    return {"msg_type": kind, "header": {"msg_type": kind}, "parent_header": {"msg_id": "m"}, "content": content,
            "metadata": {}}


@pytest.mark.fast
def test_capped_execute_caps_each_cell_and_the_notebook_and_sanitizes():
    from grading.nbsteps.execute import CappedExecute
    ex = CappedExecute(max_output_bytes=1000, max_notebook_output_bytes=2500)
    ex.km, ex.nb = _FakeKernel(), nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell()])
    ex.reset_execution_trackers()
    ex.clear_before_next_output = False
    ex._counting, ex._bytes, ex._notebook_bytes, ex._noticed = None, 0, 0, set()
    cells = {i: [] for i in range(8)}
    cells[0] = ex.nb.cells[0].outputs

    async def run():
        ex.output(cells[0], _msg("display_data", {"data": {"text/html": "<script>x</script><i>a</i>",
                                                           "application/javascript": "x"}, "metadata": {}},
                                 display_id="d"), "d", 0)
        ex.process_message(_msg("update_display_data", {"data": {"text/html": "<img src=x onerror=y><b>b</b>"},
                                                        "metadata": {}}, display_id="d"), ex.nb.cells[0], 0)
        for index in range(1, 8):
            for _ in range(4):
                ex.output(cells[index], _msg("stream", {"name": "stdout", "text": "y" * 400}), None, index)
        await asyncio.sleep(0)

    asyncio.run(run())
    assert ex.nb.cells[0].outputs[0].data["text/html"] == "<b>b</b>"  # the update, sanitized
    # the cell's cap: what fits is kept (the third message in part), then one notice; the rest is
    # dropped, and the cell runs on to its own timeout (an interrupt could land in the next cell)
    assert [len(o.text) for o in cells[1][:3]] == [400, 400, 200] and len(cells[1]) == 4
    assert "输出超过 1000 字节" in cells[1][3].text
    notices = [[o for o in cells[i] if "[grader]" in o.get("text", "")] for i in range(1, 8)]
    assert all(len(n) == 1 for n in notices)  # one notice per cell
    after = [i for i in range(1, 8) if "整个 notebook" in notices[i - 1][0].text]
    assert after and all(len(cells[i]) == 1 for i in after[1:])  # past the notebook's cap: the notice only
    stored = sum(len(o.get("text", "")) for i in range(1, 8) for o in cells[i] if "[grader]" not in o.get("text", ""))
    assert 2000 < stored <= 2500  # what was kept fills the notebook's budget, no more
    assert ex.km.interrupts == 0


# --- the real pipeline: one hostile submission ------------------------------------------------------------

#: Small caps for the scratch course, so that the flood is quick to grade and to look at.
CELL_CAP, NOTEBOOK_CAP = 150_000, 600_000
FLOOD_CELLS = 12

HOSTILE = r'''"""hostile — right answers; cells that try to run script in the instructor's and the student's browser."""
# base: ref_reference

# %% [markdown] written_1x1
# 1×1 卷积层相当于在每个像素位置上的全连接层：$\mathbf{Y}_{:,i,j} = \mathbf{W}\mathbf{X}_{:,i,j} + \mathbf{b}$。
#
# | 全连接层 | 1×1 卷积 | 形状 |
# |:--|:--|--:|
# | 权重 | 核 | $c_o\times c_i$ |
#
# <img src=x onerror="@JS:md-img@"><script>@JS:md-script@</script>
# [点这里](javascript:window.__pwned='md-link') 和 <javascript:window.__pwned='md-autolink'>
# 和 [参考][r] 和 [另一个](jav&#x09;ascript:window.__pwned='md-entity')
# <svg onload="@JS:md-svg@"></svg><iframe src="javascript:parent.__pwned='md-iframe'"></iframe>
#
# [r]: javascript:window.__pwned='md-refdef'

# %%
from IPython.display import HTML, SVG, Javascript, display
JS = @JSREPR@
def pwn(tag):
    return JS.replace('TAG', tag)
display(HTML('<script>' + pwn('html-script') + '</script>'
             '<img src=x onerror="' + pwn('html-img') + '">'
             '<svg onload="' + pwn('html-svg') + '"></svg>'
             '<iframe srcdoc="<script>parent.__pwned=1</script>"></iframe>'
             '<table><thead><tr><th>kept</th><th>table</th></tr></thead><tbody><tr><td>1</td><td>2</td></tr></tbody></table>'))
display(Javascript(pwn('javascript-output')))
display(SVG('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><script>' + pwn('svg-script')
            + '</script><circle r="5"/></svg>'))
display({'text/html': '<b onmouseover="' + pwn('raw-html') + '">raw</b>',
         'text/markdown': '<script>' + pwn('markdown-output') + '</script>'}, raw=True)
display({'image/png': @PNG@, 'text/plain': 'dot'}, raw=True,
        metadata={'image/png': {'width': "1 onload=window.__pwned='png-width'"}})
handle = display(HTML('<i>before</i>'), display_id=True)
handle.update(HTML('<script>' + pwn('update-display') + '</script><i>after</i>'))

# %% [markdown]
# 我的图：![evil](attachment:evil.svg) ![ok](attachment:ok.png)
'''


def hostile_sample():
    text = HOSTILE.replace("@JSREPR@", repr(js("TAG"))).replace("@PNG@", repr(PNG_1x1))
    text = re.sub(r"@JS:([\w-]+)@", lambda m: js(m.group(1)), text)
    flood = "\n".join(f"# %%\nfor _ in range(400):\n    print('flood {k} ' + 'y' * 990)\n" for k in range(FLOOD_CELLS))
    return text + "\n" + flood


@pytest.fixture(scope="module")
def hostile_course(tmp_path_factory):
    """A scratch course with the hostile submission graded (sandboxed where possible) and its feedback made."""
    from grading.fill import fill_notebook, release_notebook, write_submission
    from grading.run import batch
    base = tmp_path_factory.mktemp("render")
    course = sandbox_or_trusted(make_course(base / "course"))
    with open(course / "nbgrader_config.py", "a") as f:
        f.write(f"\nc.Execute.timeout = 60  # tests\nc.CappedExecute.max_output_bytes = {CELL_CAP}\n"
                f"c.CappedExecute.max_notebook_output_bytes = {NOTEBOOK_CAP}\n")
    if (ROOT / "node_modules").is_dir():  # MathJax 3 for the feedback page
        (course / "node_modules").symlink_to(ROOT / "node_modules")
    samples = base / "samples"
    samples.mkdir()
    shutil.copy(ROOT / "samples" / "class" / "ref_reference.py", samples)
    (samples / "hostile.py").write_text(hostile_sample(), encoding="utf-8")
    nb = fill_notebook(release_notebook(course, ASSIGNMENT), samples / "hostile.py")
    # what a sample file cannot say: cell tags, attachments
    first_own = next(c for c in nb.cells if c.cell_type == "code" and "def pwn" in c.source)
    first_own.metadata["tags"] = ['x" onmouseover="window.__pwned=\'tag\'', "hidden"]
    first_own.metadata["jupyter"] = {"source_hidden": True}
    figure = next(c for c in nb.cells if "attachment:evil.svg" in c.source)
    figure["attachments"] = {"evil.svg": {"image/svg+xml": base64.b64encode(
                                 b'<svg xmlns="http://www.w3.org/2000/svg" onload="window.__pwned=1"/>').decode()},
                             "ok.png": {"image/png": PNG_1x1}}
    write_submission(course, "hostile", {NB: nb}, ASSIGNMENT)
    (result,) = batch.grade(course, ASSIGNMENT, jobs=1, progress=False)
    nbgrader(course, "generate_feedback", ASSIGNMENT, "--force")
    yield course, result


def _own_flood_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code" and c.source.startswith("for _ in range(400)")]


@pytest.mark.timeout(1200)
def test_the_autograded_notebook_holds_nothing_that_runs_and_is_capped(hostile_course):
    course, result = hostile_course
    path = course / "autograded" / "hostile" / ASSIGNMENT / NB
    nb = nbformat.read(path, as_version=4)
    release_size = (course / "release" / ASSIGNMENT / NB).stat().st_size
    assert path.stat().st_size < NOTEBOOK_CAP + release_size + 100_000, path.stat().st_size
    full = all(result.scores[t] >= result.max_scores[t] for t in result.tests)  # right answers: full marks
    assert full and "timeout" not in result.flags, (result.scores, result.flags, result.reasons)

    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert set(out.get("data", {})) <= {"text/plain", "text/html", "image/png", "image/jpeg", "image/gif"}
            assert dangers(out.get("data", {}).get("text/html", "")) == []
            assert set(out.get("metadata", {})) <= {"image/png", "image/jpeg", "image/gif"}
            assert "transient" not in out
    payloads = next(c for c in nb.cells if "def pwn" in c.source)
    assert payloads.metadata == {}  # the tags went
    shown = "".join(o.data.get("text/html", "") for o in payloads.outputs if o.output_type == "display_data")
    assert "<th>kept</th>" in shown and "<i>after</i>" in shown and "<b>raw</b>" in shown
    png = next(o for o in payloads.outputs if "image/png" in o.get("data", {}))
    assert png.metadata == {}  # the width with a handler in it went
    answer = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "written_1x1")
    assert dangers(render_markdown(answer.source)) == [] and r"$\mathbf{Y}_{:,i,j}" in answer.source
    figure = next(c for c in nb.cells if "我的图" in c.source)
    assert list(figure.get("attachments", {})) == ["ok.png"]

    flood = _own_flood_cells(nb)
    assert len(flood) == FLOOD_CELLS
    notices = [c for c in flood if len(c.outputs) == 1 and "整个 notebook" in c.outputs[0].get("text", "")]
    assert len(notices) >= FLOOD_CELLS // 2, [[o.get("text", "")[-200:] for o in c.outputs] for c in flood]
    assert all(sum("[grader]" in o.get("text", "") for o in c.outputs) <= 1 for c in flood)  # one notice per cell

    # the formgrader's template (classic) on this notebook: no handler, no script of the student's
    page = BeautifulSoup(export_html(nb), "html.parser")
    found = [d for el in page.find_all(class_="cell") for d in dangers(str(el))]
    assert found == []
    assert all("__pwned" not in (s.string or "") for s in page.find_all("script"))


def _block_all_but(context, allowed, outside):
    def guard(route):
        url = route.request.url
        if any(url.startswith(a) for a in allowed) or url.startswith("data:"):
            route.continue_()
        else:
            outside.append(url)
            route.abort()
    context.route("**/*", guard)


CELL_BOXES_JS = """(table) => Array.from(table.querySelector('tr').cells).map(c => {
  const r = c.getBoundingClientRect(), s = getComputedStyle(c);
  return {left: r.left, right: r.right, top: r.top, bottom: r.bottom, text: c.innerText,
          padding: parseFloat(s.paddingLeft) + parseFloat(s.paddingRight), border: s.borderLeftStyle};
})"""


def _assert_laid_out(cells, names):
    """Header cells side by side, each with a border and padding; `names` among their texts."""
    assert len(cells) >= 3 and set(names) <= {c["text"].strip() for c in cells}, cells
    for a, b in zip(cells, cells[1:]):
        assert a["right"] <= b["left"] + 0.5, (a, b)  # side by side, not on top of each other
    assert all(c["padding"] >= 8 and c["border"] != "none" and c["right"] - c["left"] > c["padding"] for c in cells)


@pytest.mark.timeout(1200)
def test_feedback_renders_offline_and_runs_no_student_script(hostile_course):
    sync_playwright = require_browser()
    course, _ = hostile_course
    page_path = course / "feedback" / "hostile" / ASSIGNMENT / "channels.html"
    text = page_path.read_text(encoding="utf-8")
    soup = BeautifulSoup(text, "html.parser")
    csp = soup.find("meta", attrs={"http-equiv": "Content-Security-Policy"})["content"]
    script_src = next(d for d in csp.split(";") if d.strip().startswith("script-src")).split()[1:]
    assert "default-src 'none'" in csp and all(s.startswith("'sha256-") for s in script_src), csp
    inline = [s.string or "" for s in soup.find_all("script")]
    assert all(not s.get("src") for s in soup.find_all("script")) and "cdnjs" not in text
    assert len(inline) == len(script_src) == 2 and all(feedback.script_hash(s) in script_src for s in inline)
    require((ROOT / "node_modules" / "mathjax3" / "es5" / "tex-svg.js").is_file(), "node_modules lacks mathjax3 (npm ci)")
    ARTIFACTS.mkdir(exist_ok=True)
    outside, errors = [], []
    with sync_playwright() as p:
        browser = launch(p)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            _block_all_but(context, [page_path.as_uri()], outside)
            page = context.new_page()
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(page_path.as_uri())
            page.wait_for_load_state("load")
            page.wait_for_function("document.querySelectorAll('mjx-container svg').length > 20", timeout=120_000)
            page.wait_for_timeout(1500)  # anything of the student's would have run by now
            assert page.evaluate("typeof window.__pwned") == "undefined"
            assert page.title() != "pwned"
            # math of the instructor's text and of the student's answer, typeset offline
            typeset = page.evaluate("""() => Array.from(document.querySelectorAll('.text_cell_render'))
                .filter(el => el.querySelector('mjx-container svg')).length""")
            assert typeset >= 5
            assert r"$\mathbf{X}$" not in page.inner_text("body")
            # the intro's table of parts and a verdict table read as tables
            intro = page.locator(".text_cell_render table").first
            _assert_laid_out(intro.evaluate(CELL_BOXES_JS), ["分"])
            verdict = page.locator("table.grading-verdict").first
            _assert_laid_out(verdict.evaluate(CELL_BOXES_JS), ["得分 (points)", "说明 (message)"])
            intro.scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "feedback-intro.png"))
            verdict.scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "feedback-verdict.png"))
            page.locator("text=我的图").first.scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "feedback-hostile-cells.png"))
        finally:
            browser.close()
    assert outside == [], outside  # nothing asked for the network, not even the payloads' fetch
    assert errors == [], errors


# --- the formgrader: the instructor's own server -----------------------------------------------------------

@pytest.mark.timeout(1200)
def test_the_formgrader_page_runs_no_student_script(hostile_course, tmp_path):
    sync_playwright = require_browser()
    course, _ = hostile_course
    from nbgrader.api import Gradebook
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        submission = gb.find_submission_notebook(Path(NB).stem, ASSIGNMENT, "hostile").id
    pwned = course / "pwned.txt"
    pwned.unlink(missing_ok=True)
    ARTIFACTS.mkdir(exist_ok=True)
    with jupyter_server("jupyter-server", course, tmp_path) as (base, token, log_path):
        outside = []
        with sync_playwright() as p:
            browser = launch(p)
            try:
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                _block_all_but(context, [base], outside)
                page = context.new_page()
                errors = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                # the instructor's session: logged in once (the cookie is the server's, path /) ...
                page.goto(f"{base}/api/status?token={token}")
                # ... then grading the written answer of this submission
                page.goto(f"{base}/formgrader/submissions/{submission}/")
                page.wait_for_selector(".nbgrader_cell", timeout=60_000)
                page.wait_for_load_state("load")
                page.wait_for_timeout(3000)  # anything of the student's would have run by now
                # Offline, as in a classroom: the math is typeset with the course's MathJax, and
                # nbgrader's formgrade.js got through its start-up (keyboard shortcuts and all).
                page.wait_for_function("document.querySelectorAll('.text_cell_render mjx-container svg').length > 5",
                                       timeout=60_000)
                assert page.evaluate("formgrader.loaded && !!formgrader.keyboard_manager") is True, errors
                assert errors == [], errors
                assert page.evaluate("typeof window.__pwned") == "undefined"
                assert page.title() != "pwned"
                assert "1×1 卷积层相当于" in page.inner_text("body")  # the answer is there to grade
                page.locator(".nbgrader_cell", has_text="1×1 卷积层相当于").first.scroll_into_view_if_needed()
                page.screenshot(path=str(ARTIFACTS / "formgrader-hostile.png"))
                assert not pwned.exists(), pwned.read_text()
                # The control: the payload, had it run in this page, would have written the file.
                page.evaluate(js("control"))
                for _ in range(40):
                    if pwned.exists():
                        break
                    time.sleep(0.25)
                assert pwned.exists() and "control" in pwned.read_text(), log_path.read_text()[-3000:]
            finally:
                browser.close()
        # nothing asked for the network (no CDN), but the control call itself
        assert [u for u in outside if not u.endswith("127.0.0.1:9/control")] == [], outside
    pwned.unlink(missing_ok=True)
