"""html_payloads — outputs and a written answer made to run script in the instructor's browser.

Own cells display HTML with <script> and event handlers, a JavaScript output, an SVG with
script and a markdown output with raw HTML; the written answer holds raw HTML, a script tag
and a javascript: link; a cell's tags try to break out of nbconvert's class attribute. In the
formgrader's manual grading page (served by the instructor's own Jupyter server) and in the
feedback page, any of these could act with the instructor's session. Every output and
markdown cell passes the sanitizer before it reaches the autograded notebook: nothing of it
can run. The answers are the reference's: 17/17 + 2 (the written answer awaits the grader).
"""
# base: ../../../samples/class/ref_reference.py

# %%
from IPython.display import HTML, SVG, Javascript, Markdown, display

_PUT = ("fetch('/api/contents/pwned.txt', {method: 'PUT', headers: {'Content-Type': 'application/json'}, "
        "body: JSON.stringify({type: 'file', format: 'text', content: 'pwned'})})")
display(HTML(f"<b>results</b><script>window.__pwned = 1; {_PUT}</script>"
             "<img src=x onerror=\"window.__pwned = 2\"><iframe src=\"javascript:window.__pwned=3\"></iframe>"))
display(Javascript("window.__pwned = 4;"))
display(SVG('<svg xmlns="http://www.w3.org/2000/svg" onload="window.__pwned = 5"><script>window.__pwned = 6'
            '</script><circle r="4"/></svg>'))
display(Markdown("<img src=x onerror=\"window.__pwned = 7\"> [click](javascript:window.__pwned=8)"))

# %% [markdown] written_1x1
# 1×1 卷积就是逐像素的全连接层。<script>window.__pwned = 9</script>
# <img src="x" onerror="window.__pwned = 10">
# [参考资料](javascript:window.__pwned=11) 与 <a href="jav&#x09;ascript:window.__pwned=12">链接</a>
