"""ipython_transform — changes how IPython runs every later cell: each is wrapped in try/except.

No answer is written (all stubs). An own cell registers an IPython input transformer that
wraps every following cell in `try: ... except BaseException: pass`, so no test cell can
fail inside the kernel and the execute replies say "ok". The verifier runs the
instructor's test cells itself: every test is lost (0/18), no flag (the kernel's own result never counts).
"""

# %%
def _never_fail(lines):
    body = "".join(lines)
    if not body.strip():
        return lines
    return ["try:\n"] + ["    " + line for line in body.splitlines(keepends=True)] + ["\nexcept BaseException:\n    pass\n"]


get_ipython().input_transformers_post.append(_never_fail)
