"""The one filter of what a student's kernel produced and of what a student wrote.

Every byte of a submission is hostile, and what the grading keeps of it is shown in two
browsers: the instructor's, in the formgrader's manual-grading page (served by the
instructor's own Jupyter server, so a script there could use the instructor's session),
and the student's, in the feedback page. nbconvert puts outputs, markdown and some
metadata into those pages as they are (`text/html` and `application/javascript` outputs
verbatim, raw HTML and `javascript:` links of markdown, an image's `width` unquoted), so
nothing reaches a notebook the pipeline writes without passing here first:

    sanitize_output(output)     one output of the kernel: allowlisted types only, text/html
                                cleaned to a strict allowlist, images checked, metadata reduced
    sanitize_markdown(source)   a markdown cell the student wrote: raw HTML made inert,
                                links and images with dangerous targets neutralised; then
                                rendered with nbconvert's own renderer and checked, and shown
                                as a code block when anything unsafe would still come out
    sanitize_attachments(cell)  only PNG, JPEG and GIF attachments survive
    sanitize_notebook(nb)       all of the above over a notebook, plus the untrusted cell
                                metadata of the student's own cells; returns what was removed

grading/nbsteps/execute.py's CappedExecute runs `sanitize_output` on each output as it arrives,
the autograde step `SanitizeNotebook` (grading/nbsteps/) and the feedback run
`sanitize_notebook` over the notebook. The verdict tables the pipeline writes into test
cells afterwards are its own (their texts are escaped where they are made) and are left
alone here. Standard library and bleach only.
"""
import base64
import binascii
import html
import re
import urllib.parse
from html.parser import HTMLParser

import bleach
from nbformat import NotebookNode

KiB, MiB = 2**10, 2**20

#: Text of one output (a stream's text, text/plain, text/html, a traceback line ...).
MAX_TEXT = 2 * MiB
#: One image, decoded.
MAX_IMAGE_BYTES = 1 * MiB
#: An output's text/html longer than this is dropped (its text/plain stays).
MAX_HTML = 512 * KiB
#: Rebuilt HTML up to this length goes through bleach as well.
BLEACH_CHECKED = 128 * KiB
#: A markdown cell of the student's: longer ones are shown as text (at most MAX_MARKDOWN_SHOWN).
MAX_MARKDOWN, MAX_MARKDOWN_SHOWN = 32 * KiB, 256 * KiB
#: All the student's markdown cells of a notebook together; past it, cells are shown as text.
MAX_NOTEBOOK_MARKDOWN = 256 * KiB
#: Lines of a traceback.
MAX_TRACEBACK_LINES = 200
#: Longest side an image may ask for (metadata width/height).
MAX_IMAGE_SIDE = 10_000

NOTICE = "[grader]"

IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif")
_MAGIC = {"image/png": (b"\x89PNG\r\n\x1a\n",), "image/jpeg": (b"\xff\xd8\xff",), "image/gif": (b"GIF87a", b"GIF89a")}
KEPT_TYPES = ("text/plain", "text/html", *IMAGE_TYPES)

# --- HTML: a strict allowlist ---------------------------------------------------------------------

#: Tags an output's text/html may keep (tables, basic formatting, lists, headings, code, images).
HTML_TAGS = frozenset("""
    table thead tbody tfoot tr th td caption colgroup col
    p div span br hr pre code kbd samp var tt b i em strong u s del ins mark small sub sup q
    blockquote ul ol li dl dt dd h1 h2 h3 h4 h5 h6 img
""".split())
#: Elements dropped together with everything inside them.
HTML_DROP_WITH_CONTENT = frozenset("""
    script style template noscript iframe frame frameset object embed applet svg math textarea
    title xmp noembed noframes plaintext select button form head audio video canvas
""".split())
_VOID = frozenset("br hr img col area base input link meta param source track wbr".split())
_NUMBER = re.compile(r"^\s*(\d{1,5})\s*$")
_DATA_IMAGE = re.compile(r"^data:(image/(?:png|jpeg|gif));base64,([A-Za-z0-9+/=\s]*)$", re.I)


def _decode_image(mime, b64):
    """The bytes of a base64 image of type `mime`, or None (bad base64, wrong magic, too big)."""
    if not isinstance(b64, str):
        return None
    compact = re.sub(r"\s+", "", b64)
    if not compact or len(compact) > (MAX_IMAGE_BYTES * 4) // 3 + 8:
        return None
    try:
        raw = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) > MAX_IMAGE_BYTES or not raw.startswith(_MAGIC[mime]):
        return None
    return raw


def _data_image_ok(value):
    m = _DATA_IMAGE.match(value.strip())
    return bool(m) and _decode_image(m.group(1).lower(), m.group(2)) is not None


def _allowed_attribute(tag, name, value):
    """The attributes an output's HTML may keep: numbers, an image's data: source, an alt text."""
    if tag in ("td", "th") and name in ("colspan", "rowspan"):
        return bool(_NUMBER.match(value)) and 0 < int(value) <= 1000
    if tag == "ol" and name == "start":
        return bool(_NUMBER.match(value))
    if tag == "img":
        if name == "src":
            return _data_image_ok(value)
        if name in ("width", "height"):
            return bool(_NUMBER.match(value)) and 0 < int(value) <= MAX_IMAGE_SIDE
        if name == "alt":
            return len(value) <= 1000
    return False


class _Rebuild(HTMLParser):
    """Re-serialise HTML from its tokens: allowlisted tags and attributes only, all text escaped,
    the dangerous elements dropped with their content. The output is made here, so a
    browser reads it as this parser did."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.out, self.removed = [], set()
        self._skip, self._depth = None, 0

    def handle_starttag(self, tag, attrs):
        if self._skip is not None:
            if tag == self._skip and tag not in _VOID:
                self._depth += 1
            return
        if tag in HTML_DROP_WITH_CONTENT:
            self.removed.add(f"<{tag}>")
            self._skip, self._depth = tag, 1
            return
        if tag not in HTML_TAGS:
            self.removed.add(f"<{tag}>")
            return
        kept = []
        for name, value in attrs:
            value = "" if value is None else value
            if _allowed_attribute(tag, name, value):
                kept.append(f' {name}="{html.escape(value.strip() if name != "alt" else value, quote=True)}"')
            else:
                self.removed.add(f"{tag}[{name}]" if not name.startswith("on") else f"{tag}[on*]")
        if tag == "img" and not any(k.startswith(" src=") for k in kept):
            self.removed.add("<img> without a data: PNG/JPEG/GIF")
            return
        self.out.append(f"<{tag}{''.join(kept)}>")

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag):
        if self._skip is not None:
            if tag == self._skip:
                self._depth -= 1
                if self._depth <= 0:
                    self._skip = None
            return
        if tag in HTML_TAGS and tag not in _VOID:
            self.out.append(f"</{tag}>")

    def handle_data(self, data):
        if self._skip is None:
            self.out.append(html.escape(data, quote=False))

    def handle_comment(self, data):
        pass

    def handle_decl(self, decl):
        self.removed.add("<!declaration>")

    def handle_pi(self, data):
        self.removed.add("<?processing instruction>")

    def unknown_decl(self, data):
        self.removed.add("<![...]>")


_TAG = re.compile(r"</?[A-Za-z][^<>]*>")


def _defuse(fragment):
    """`fragment` with every "<" that does not open a complete tag written as "&lt;" and the
    comments taken out, in one pass. Python's HTMLParser takes quadratic time on runs of
    unfinished tags or comments ("<a <a <a ...", "<!--<!--..."); after this it sees none. (A
    quoted ">" inside an attribute ends the tag here: what is cut is shown as text.)"""
    out, i, n, comments = [], 0, len(fragment), True
    while i < n:
        j = fragment.find("<", i)
        if j == -1:
            out.append(fragment[i:])
            break
        out.append(fragment[i:j])
        if comments and fragment.startswith("<!--", j):
            end = fragment.find("-->", j + 4)
            if end != -1:
                i = end + 3
                continue
            comments = False  # no comment ends after here: the rest are text
        m = _TAG.match(fragment, j)
        if m:
            out.append(m.group(0))
            i = m.end()
        else:
            out.append("&lt;")
            i = j + 1
    return "".join(out)


def _malformed(html_text):
    """True if some "<" of `html_text` opens no complete tag (or opens a comment, a
    declaration, a processing instruction): not what a markdown renderer makes of safe text."""
    i = 0
    while True:
        j = html_text.find("<", i)
        if j == -1:
            return False
        m = _TAG.match(html_text, j)
        if not m:
            return True
        i = m.end()


_BLEACH = bleach.Cleaner(tags=HTML_TAGS, attributes=_allowed_attribute, protocols=["data"],
                         strip=True, strip_comments=True)


def sanitize_html(fragment, removed=None):
    """`fragment` cleaned to the strict allowlist (HTML_TAGS; no style, class, id, on*, links;
    images only as data: PNG/JPEG/GIF). Rebuilt from its tokens, then through bleach (up to
    BLEACH_CHECKED characters)."""
    parser = _Rebuild()
    try:
        parser.feed(_defuse(str(fragment)))
        parser.close()
    except Exception:  # noqa: BLE001 (a parser that gives up: keep nothing of it)
        if removed is not None:
            removed.add("unparseable HTML")
        return ""
    if removed is not None:
        removed.update(parser.removed)
    rebuilt = "".join(parser.out)
    # bleach (html5lib) checks it again: slow on long texts (seconds per 100 KB of entities),
    # so only up to BLEACH_CHECKED; the rebuilt HTML is made of allowlisted tokens anyway
    return _BLEACH.clean(rebuilt) if len(rebuilt) <= BLEACH_CHECKED else rebuilt


# --- outputs ----------------------------------------------------------------------------------------

def _text(value, limit=MAX_TEXT, what="output"):
    """A string from whatever the kernel sent (a list of lines is joined), cut at `limit`."""
    if isinstance(value, list):
        value = "".join(str(v) for v in value)
    elif not isinstance(value, str):
        value = "" if value is None else str(value)
    if len(value) > limit:
        value = value[:limit] + f"\n{NOTICE} {what} 过长，已截断 (truncated at {limit} characters)\n"
    return value


def _notice(removed_types):
    kinds = ", ".join(sorted(removed_types)) or "unknown"
    return f"{NOTICE} 不安全或不支持的输出已被移除 (output removed: {kinds})"


def _image_metadata(metadata, mime):
    """{'width': n, 'height': n} of an image from its output metadata: positive integers only."""
    found = {}
    sources = [metadata.get(mime)] if isinstance(metadata, dict) else []
    for source in sources:
        if not isinstance(source, dict):
            continue
        for key in ("width", "height"):
            value = source.get(key)
            if isinstance(value, bool):
                continue
            if isinstance(value, (int, float)) and 0 < value <= MAX_IMAGE_SIDE:
                found[key] = int(value)
    return found


def _sanitize_output(output, removed):
    """See sanitize_output; adds a description of each thing removed to the set `removed`."""
    if not isinstance(output, dict):
        removed.add("not an output")
        return None
    kind = output.get("output_type")
    if kind == "stream":
        name = output.get("name") if output.get("name") in ("stdout", "stderr") else "stdout"
        return NotebookNode(output_type="stream", name=name, text=_text(output.get("text"), what="stream"))
    if kind == "error":
        traceback = output.get("traceback")
        traceback = traceback if isinstance(traceback, list) else []
        if len(traceback) > MAX_TRACEBACK_LINES:
            removed.add("traceback lines")
            traceback = traceback[:MAX_TRACEBACK_LINES // 2] + ["..."] + traceback[-MAX_TRACEBACK_LINES // 2:]
        return NotebookNode(output_type="error", ename=_text(output.get("ename"), 1000, "ename"),
                            evalue=_text(output.get("evalue"), 100 * KiB, "evalue"),
                            traceback=[_text(line, 100 * KiB, "traceback") for line in traceback])
    if kind not in ("display_data", "execute_result", "update_display_data"):
        removed.add(f"output_type {str(kind)[:40]}")
        return None

    data = output.get("data") if isinstance(output.get("data"), dict) else {}
    metadata = output.get("metadata") if isinstance(output.get("metadata"), dict) else {}
    clean, meta, dropped = {}, {}, set()
    for mime, value in data.items():
        if mime == "text/plain":
            clean[mime] = _text(value, what="text/plain")
        elif mime in IMAGE_TYPES:
            raw = _decode_image(mime, "".join(value) if isinstance(value, list) else value)
            if raw is None:
                dropped.add(f"{mime} (not a valid image, or over {MAX_IMAGE_BYTES} bytes)")
                continue
            clean[mime] = base64.b64encode(raw).decode("ascii")
            size = _image_metadata(metadata, mime)
            if size:
                meta[mime] = size
        elif mime == "text/html":
            value = "".join(value) if isinstance(value, list) else str(value)
            if len(value) > MAX_HTML:
                dropped.add(f"text/html (over {MAX_HTML} characters)")
                continue
            found = set()
            cleaned = sanitize_html(value, found)
            dropped.update(f"text/html {what}" for what in found)
            if cleaned.strip():
                clean[mime] = cleaned
        else:
            dropped.add(str(mime)[:80])
    removed.update(dropped)
    extra = set(metadata) - set(meta)
    if extra:
        removed.add("output metadata (" + ", ".join(sorted(map(str, extra)))[:80] + ")")
    if not clean or set(clean) == {"text/html"} and dropped:
        # nothing, or only part of an HTML output, is left: say so in a line of text
        clean.setdefault("text/plain", _notice(dropped))
    if kind == "execute_result":
        count = output.get("execution_count")
        return NotebookNode(output_type="execute_result", data=clean, metadata=meta,
                            execution_count=count if isinstance(count, int) and not isinstance(count, bool) else None)
    return NotebookNode(output_type="display_data", data=clean, metadata=meta)


def sanitize_output(output):
    """A safe copy of one notebook output, or None for something that is no output.

    - stream: stdout/stderr, text as str; error: ename, evalue, traceback as strings;
    - display_data / execute_result / update_display_data -> display_data (execute_result
      stays one): `data` keeps text/plain, PNG/JPEG/GIF (base64 that decodes, magic bytes
      of its type, at most MAX_IMAGE_BYTES) and text/html cleaned to HTML_TAGS; everything
      else (JavaScript, SVG, markdown, LaTeX, widget views, unknown types) is dropped, with
      its text/plain kept or a one-line notice in its place;
    - `metadata` keeps only integer width/height of the images; no transient, no display_id.
    """
    return _sanitize_output(output, set())


# --- markdown -----------------------------------------------------------------------------------------

_SAFE_SCHEMES = ("http", "https", "mailto")
_SCHEME = re.compile(r"^([a-z][a-z0-9+.\-]*):")
_INVISIBLE = re.compile(r"[\x00-\x20\x7f-\x9f\u00ad\u200b-\u200f\u2028\u2029\u2060\ufeff]")


def url_is_safe(url, attachments=None):
    """True for a link/image target that runs nothing and fetches nothing unexpected:
    relative, #fragment, http(s), mailto, data:image/png|jpeg|gif, attachment:NAME (of
    `attachments` when given). Entities, backslash escapes, percent-encoding and
    whitespace or control characters anywhere (`jav&#x09;ascript:`) are undone first."""
    u = str(url)
    if u.startswith("<") and u.endswith(">"):
        u = u[1:-1]
    for _ in range(3):  # entities and %-escapes, nested a few times
        before = u
        u = re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", u)
        u = html.unescape(u)
        u = urllib.parse.unquote(u)
        if u == before:
            break
    decoded = _INVISIBLE.sub("", u)
    u = decoded.lower()
    m = _SCHEME.match(u)
    if not m:
        return ":" not in u.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    scheme = m.group(1)
    if scheme in _SAFE_SCHEMES:
        return True
    if scheme == "data":
        return re.match(r"^data:image/(png|jpeg|gif)[;,]", u) is not None
    if scheme == "attachment":
        return attachments is None or decoded.split(":", 1)[1] in attachments
    return False


#: Raw HTML a student may keep in markdown: these tags, without any attribute.
_SIMPLE_TAG = re.compile(r"</?(?:b|i|em|strong|u|s|sub|sup|code|kbd|br|hr|p)\s*/?>", re.I)
_AUTOLINK = re.compile(r"<([A-Za-z][A-Za-z0-9+.\-]{1,31}:[^\s<>]*)>")
_EMAIL = re.compile(r"<[A-Za-z0-9.!#$%&'*+/=?^_`{|}~\-]+@[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"
                    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?)*>")
_HTML_START = re.compile(r"<(?=[A-Za-z/!?])")
_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})")
_REFDEF = re.compile(r"(?m)^( {0,3}\[(?:\\.|[^\\\[\]\n])+\]:[ \t]*(?:\n[ \t]*)?)(<[^<>\n]*>|\S+)")
# The math of nbconvert's markdown renderer (nbconvert/filters/markdown_mistune.py) and code spans.
_PROTECTED = re.compile("|".join([
    r"(?P<code>(?P<ticks>`+)(?s:.+?)(?<!`)(?P=ticks)(?!`))",
    r"(?s:(?<!\\)\$\$.*?(?<!\\)\$\$)",
    r"(?s:(?<!\\)\\\\\[.*?(?<!\\)\\\\\])",
    r"(?s:(?<![$\\])\$.+?(?<![$\\])\$)",
    r"(?s:(?<!\\)\\\\\(.*?(?<!\\)\\\\\))",
    r"(?s:\\begin\{(?P<env>[a-z]*\*?)\}.*?\\end\{(?P=env)\})",
]))
_NEUTRAL = "#blocked-link"


def _link_target_end(text, i):
    """For an inline link whose destination starts at text[i] (just after `](`): (start, end)
    of the destination, or None."""
    n = len(text)
    while i < n and text[i] in " \t":
        i += 1
    if i < n and text[i] == "\n":
        i += 1
        while i < n and text[i] in " \t":
            i += 1
    start = i
    if i < n and text[i] == "<":
        j = text.find(">", i)
        return (start, j + 1) if j != -1 and "\n" not in text[i:j] else None
    depth = 0
    while i < n:
        ch = text[i]
        if ch == "\\" and i + 1 < n:
            i += 2
            continue
        if ch.isspace() or ord(ch) < 32:
            break
        if ch == "(":
            depth += 1
        elif ch == ")":
            if depth == 0:
                break
            depth -= 1
        i += 1
    return start, i


def _plain(text, attachments, removed):
    """Make one stretch of markdown that is neither code nor math inert."""
    out, i, n = [], 0, len(text)
    link = text.find("](")
    while i < n:
        if link != -1 and link < i:
            link = text.find("](", i)  # (looked up again only once passed: linear in the text)
        lt = text.find("<", i)
        candidates = [p for p in (lt, link) if p != -1]
        if not candidates:
            out.append(text[i:])
            break
        j = min(candidates)
        out.append(text[i:j])
        if j == link:
            found = _link_target_end(text, j + 2)
            if found is None:
                out.append("](")
                i = j + 2
                continue
            start, end = found
            target = text[start:end]
            out.append(text[j:start])
            if target and not url_is_safe(target, attachments):
                removed.add(f"link target {target[:60]!r}")
                out.append(_NEUTRAL)
            else:
                out.append(target.replace("<", "&lt;") if not target.startswith("<") else target)
            i = end
            continue
        # a "<"
        for pattern in (_SIMPLE_TAG, _EMAIL):
            m = pattern.match(text, j)
            if m:
                out.append(m.group(0))
                i = m.end()
                break
        else:
            m = _AUTOLINK.match(text, j)
            if m and url_is_safe(m.group(1), attachments):
                out.append(m.group(0))
                i = m.end()
            elif _HTML_START.match(text, j):
                removed.add("raw HTML" if not m else f"autolink {m.group(1)[:60]!r}")
                out.append("&lt;")
                i = j + 1
            else:
                out.append("<")
                i = j + 1
    return "".join(out)


def _refdefs(text, attachments, removed):
    def fix(m):
        if url_is_safe(m.group(2), attachments):
            return m.group(0)
        removed.add(f"link target {m.group(2)[:60]!r}")
        return m.group(1) + _NEUTRAL
    return _REFDEF.sub(fix, text)


def _inline(text, attachments, removed):
    text = _refdefs(text, attachments, removed)
    out, last = [], 0
    for m in _PROTECTED.finditer(text):
        out.append(_plain(text[last:m.start()], attachments, removed))
        out.append(m.group(0))
        last = m.end()
    out.append(_plain(text[last:], attachments, removed))
    return "".join(out)


def _transform(source, attachments, removed):
    """Fenced code blocks stay as they are; everything else goes through _inline."""
    lines = source.splitlines(keepends=True)
    out, chunk, fence = [], [], None
    for line in lines:
        m = _FENCE.match(line)
        if fence is None and m:
            out.append(_inline("".join(chunk), attachments, removed))
            chunk, fence = [], m.group(1)
            out.append(line)
        elif fence is not None:
            out.append(line)
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) and \
                    not line.strip()[len(m.group(1)):].strip():
                fence = None
        else:
            chunk.append(line)
    out.append(_inline("".join(chunk), attachments, removed))
    return "".join(out)


# What nbconvert's renderer makes of harmless markdown, and the attributes it gives them.
_MD_TAGS = {
    "p": (), "em": (), "strong": (), "del": (), "code": ("class",), "pre": ("class",), "blockquote": (),
    "ul": (), "ol": ("start",), "li": ("class",), "hr": (), "br": (), "dl": (), "dt": (), "dd": (),
    "h1": ("id",), "h2": ("id",), "h3": ("id",), "h4": ("id",), "h5": ("id",), "h6": ("id",),
    "a": ("href", "class", "title"), "img": ("src", "alt", "title"),
    "table": (), "thead": (), "tbody": (), "tr": (), "th": ("style",), "td": ("style",),
    "input": ("class", "type", "disabled", "checked"), "div": ("class",), "span": ("class",),
    "b": (), "i": (), "u": (), "s": (), "sub": (), "sup": (), "kbd": (),
}


class _Checker(HTMLParser):
    """Does rendered markdown hold only what harmless markdown renders to?"""

    def __init__(self, attachments):
        super().__init__(convert_charrefs=False)
        self.attachments, self.problems = attachments, []

    def handle_starttag(self, tag, attrs):
        allowed = _MD_TAGS.get(tag)
        if allowed is None:
            self.problems.append(f"<{tag}>")
            return
        for name, value in attrs:
            value = value or ""
            if name not in allowed:
                self.problems.append(f"{tag}[{name}]")
            elif name in ("href", "src") and not url_is_safe(value, self.attachments):
                self.problems.append(f"{tag}[{name}={value[:40]!r}]")
            elif name == "style" and not re.fullmatch(r"text-align:\s*(left|right|center);?", value.strip()):
                self.problems.append(f"{tag}[style]")
            elif name == "type" and value != "checkbox":
                self.problems.append(f"{tag}[type={value[:20]!r}]")

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)

    def handle_data(self, data):
        if "<" in data:
            self.problems.append("a raw '<' in text")

    def handle_comment(self, data):
        self.problems.append("<!--comment-->")

    def handle_decl(self, decl):
        self.problems.append("<!declaration>")

    def handle_pi(self, data):
        self.problems.append("<?pi>")

    def unknown_decl(self, data):
        self.problems.append("<![...]>")


class _AnyAttachment(dict):
    """For rendering: every attachment name is there (names are checked by url_is_safe)."""

    def __contains__(self, key):
        return True

    def __getitem__(self, key):
        return {"image/png": "iVBORw0KGgo="}


def render_markdown(source, attachments=None):
    """nbconvert's HTML of a markdown cell, as the feedback and the formgrader render it."""
    from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath
    names = _AnyAttachment() if attachments is None else {k: {"image/png": "iVBORw0KGgo="} for k in attachments}
    return MarkdownWithMath(renderer=IPythonRenderer(escape=False, attachments=names)).render(source)


def markdown_problems(source, attachments=None):
    """What in `source`, rendered as nbconvert renders it, could run script or load something
    unexpected ([] when nothing)."""
    try:
        rendered = render_markdown(source, attachments)
    except Exception as e:  # noqa: BLE001 (what cannot be rendered cannot be shown)
        return [f"not renderable: {type(e).__name__}"]
    if _malformed(rendered):
        return ["a '<' that opens no tag, a comment or a declaration"]
    checker = _Checker(attachments)
    try:
        checker.feed(rendered)
        checker.close()
    except Exception as e:  # noqa: BLE001
        return [f"unparseable: {type(e).__name__}"]
    return checker.problems


def _as_code_block(source, notice=f"{NOTICE} 这段 markdown 含有不安全的内容，按原文显示 (unsafe markdown shown as text):"):
    ticks = max([len(t) for t in re.findall(r"`+", source)] + [2]) + 1
    return f"{notice}\n\n{'`' * ticks}text\n{source}\n{'`' * ticks}"


def _sanitize_markdown(source, attachments, removed, limit=None):
    source = "" if source is None else ("".join(source) if isinstance(source, list) else str(source))
    limit = MAX_MARKDOWN if limit is None else limit
    if len(source) > limit:
        # nbconvert's markdown renderer takes time quadratic in some texts (many \begin{..}
        # without \end, say): a long cell is shown as text, cut at MAX_MARKDOWN_SHOWN
        removed.add(f"markdown over {limit} characters shown as text")
        shown = source[:MAX_MARKDOWN_SHOWN]
        return _as_code_block(shown + ("\n..." if len(source) > len(shown) else ""),
                              f"{NOTICE} 这段 markdown 太长，按原文显示 (over {limit} characters: shown as text)")
    out = _transform(source, attachments, removed)
    if not markdown_problems(out, attachments):
        return out
    removed.add("markdown shown as text (unsafe after rendering)")
    fallback = _as_code_block(source)
    if not markdown_problems(fallback, attachments):
        return fallback
    return html.escape(source)  # pragma: no cover (a code block always renders safely)


def sanitize_markdown(source, attachments=None):
    """`source` with raw HTML made inert and dangerous link/image targets neutralised.

    Kept: math (`$...$`, `$$...$$`, `\\begin{..}`), emphasis, lists, tables, code, headings,
    http(s)/mailto links and autolinks, images from data:image/png|jpeg|gif, http(s) or
    `attachment:NAME` (a name of `attachments`, when given), and a few attribute-less tags
    (`<b>`, `<i>`, `<sub>`, `<sup>`, `<br>`, ...). Other raw HTML is escaped (shown as
    text); `javascript:`, `vbscript:`, `file:`, other `data:` targets become `#blocked-link`,
    in inline links, autolinks and reference definitions alike, however they are disguised
    (entities, escapes, whitespace). The result is then rendered with nbconvert's renderer
    and checked; if anything unsafe would still come out, the cell is shown as a code block.
    """
    return _sanitize_markdown(source, attachments, set())


# --- cells and notebooks ------------------------------------------------------------------------------

def sanitize_attachments(cell, removed=None):
    """Keep only PNG, JPEG and GIF attachments of `cell` (valid, at most MAX_IMAGE_BYTES each);
    return the names kept."""
    attachments = cell.get("attachments")
    if attachments is None:
        return set()
    kept = {}
    if isinstance(attachments, dict):
        for name, bundle in attachments.items():
            if not isinstance(name, str) or not re.fullmatch(r"[^\x00-\x1f\x7f]{1,200}", name) \
                    or not isinstance(bundle, dict):
                if removed is not None:
                    removed.add("attachment with an odd name")
                continue
            images = {}
            for mime, value in bundle.items():
                raw = _decode_image(mime, "".join(value) if isinstance(value, list) else value) \
                    if mime in IMAGE_TYPES else None
                if raw is None:
                    if removed is not None:
                        removed.add(f"attachment {mime}"[:80])
                    continue
                images[mime] = base64.b64encode(raw).decode("ascii")
            if images:
                kept[name] = images
    if kept:
        cell["attachments"] = NotebookNode(kept)
    else:
        cell.pop("attachments", None)
    return set(kept)


def _is_test(cell):
    from grading.cells import is_test
    return is_test(cell)


def _is_answer(cell):
    from grading.cells import is_answer
    return is_answer(cell)


#: Metadata of a student's own cell that is cleared without a word in the log.
_UNREMARKABLE = {"execution", "trusted", "collapsed", "scrolled"}


def _default_student_cell(cell):
    """A cell of the student's own: no nbgrader metadata (the rebuild gives every cell of the
    release its metadata back, and strips it from the student's own)."""
    from grading.cells import nbgrader_meta
    return not nbgrader_meta(cell)


def sanitize_notebook(nb, student_cell=None):
    """Sanitize `nb` in place; return a list of what was removed, for the instructor's log.

    - every code cell's outputs go through sanitize_output, except those of test cells
      (the verdicts the pipeline writes there are its own);
    - the markdown the student wrote (answer cells and their own cells) goes through
      sanitize_markdown, its attachments through sanitize_attachments; a raw cell of theirs
      is cleaned as HTML;
    - the student's own cells (`student_cell(cell)`, by default: no nbgrader metadata) lose
      their metadata (tags, alt texts, raw mimetypes ...): cells of the release keep theirs;
    - no widget state in the notebook's metadata.
    """
    student_cell = student_cell or _default_student_cell
    log, budget = [], MAX_NOTEBOOK_MARKDOWN
    for index, cell in enumerate(nb.get("cells", [])):
        where = f"cell {index + 1} ({cell.get('id') or '-'})"
        removed = set()
        own = student_cell(cell)
        kind = cell.get("cell_type")
        if kind == "code" and not _is_test(cell):
            outputs = []
            for output in cell.get("outputs", []) or []:
                clean = _sanitize_output(output, removed)
                if clean is not None:
                    outputs.append(clean)
            cell["outputs"] = outputs
        if kind == "markdown" and (own or _is_answer(cell)):
            names = sanitize_attachments(cell, removed)
            source = cell.get("source", "")
            cell["source"] = _sanitize_markdown(source, names, removed, min(MAX_MARKDOWN, max(budget, 0)))
            budget -= len(source)
        elif kind == "raw" and own:
            cell["source"] = sanitize_html(_text(cell.get("source", ""), MAX_HTML, "raw cell"), removed)
        elif own and "attachments" in cell:
            cell.pop("attachments", None)
            removed.add("attachments of a non-markdown cell")
        if own and cell.get("metadata"):
            keys = sorted(set(map(str, cell["metadata"])) - _UNREMARKABLE)  # (the executor's timings: not news)
            if keys:
                removed.add("cell metadata (" + ", ".join(keys)[:80] + ")")
            cell["metadata"] = NotebookNode()
        log += [f"{where}: {what}" for what in sorted(removed)]
    metadata = nb.get("metadata")
    if isinstance(metadata, dict) and "widgets" in metadata:
        metadata.pop("widgets")
        log.append("notebook: widget state")
    return log
