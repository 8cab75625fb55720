"""Feedback without the hidden tests: their messages stay, their code goes.

nbgrader's feedback shows the autograded notebook, in which the hidden tests were put
back, so students would read the hidden test code and the tracebacks through it
(nbgrader #917, #1156, #1363). `HideHiddenTests` runs in `nbgrader generate_feedback`
after nbgrader's own steps: in every test cell it replaces the hidden region by one
comment line and every error traceback by the exception's name and message. The
messages of the hidden asserts are written for students, so a failed hidden test still
says what went wrong.
"""
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import List, Unicode

from grading.cells import is_test

#: What a student sees where the hidden tests were.
PLACEHOLDER = "# …隐藏测试 (hidden tests)：代码不公开，失败时会显示下面的信息"




def strip_hidden(source, begin="BEGIN HIDDEN TESTS", end="END HIDDEN TESTS"):
    """`source` with each hidden region (delimiter lines included) replaced by PLACEHOLDER."""
    lines, hidden = [], False
    for line in source.splitlines():
        if begin in line:
            hidden = True
            indent = line[: len(line) - len(line.lstrip())]
            lines.append(indent + PLACEHOLDER)
        elif end in line:
            hidden = False
        elif not hidden:
            lines.append(line)
    return "\n".join(lines)


def short_error(output):
    """An error output reduced to `Name: message` (no traceback, so no code lines)."""
    output.traceback = [f"{output.ename}: {output.evalue}" if output.evalue else output.ename]
    return output


class HideHiddenTests(NbGraderPreprocessor):
    """Remove hidden test code and tracebacks from test cells, keep the failure messages."""

    # configurable as in nbgrader's GetGrades, so the HTML exporter's setting is not reported as unknown
    display_data_priority = List(NbGraderPreprocessor.display_data_priority.default_value).tag(config=True)
    begin_test_delimeter = Unicode("BEGIN HIDDEN TESTS").tag(config=True)
    end_test_delimeter = Unicode("END HIDDEN TESTS").tag(config=True)

    def preprocess_cell(self, cell, resources, index):
        if is_test(cell):
            cell.source = strip_hidden(cell.source, self.begin_test_delimeter, self.end_test_delimeter)
            for output in cell.get("outputs", []):
                if output.output_type == "error":
                    short_error(output)
        return cell, resources
