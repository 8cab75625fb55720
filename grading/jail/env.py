"""The jail's settings where a process boundary leaves no other way to pass them: one reader.

The kernel launcher (grading/jail/sandbox.py, run by jupyter_client from the kernelspec)
is a process of its own that gets nothing from the grader but its environment. The grader
writes one variable, GRADING_JAIL, with `grading.settings.Grading.export()`; the launcher
and the jail's other code read it here, with `jail_settings()`. Standalone (stdlib only):
a copy lies beside the launcher in the kernelspec folder.
"""
import json
import os

#: The one variable that carries the jail's settings across the launcher's process boundary.
JAIL_ENV = "GRADING_JAIL"
GiB = 2**30
#: What a jail gets when nobody said otherwise (grading/settings.py's defaults are these).
DEFAULTS = {"course": "", "allow_unsandboxed": False, "use_gpu": True, "gpu_memory_fraction": 0.0,
            "memory": 6 * GiB, "cpu": 300}


def jail_settings(environ=None):
    """The settings in GRADING_JAIL (or `environ`'s), each checked, over DEFAULTS."""
    environ = os.environ if environ is None else environ
    try:
        given = json.loads(environ.get(JAIL_ENV, "") or "{}")
    except ValueError:
        given = {}
    out = dict(DEFAULTS)
    for key, default in DEFAULTS.items():
        value = given.get(key, default) if isinstance(given, dict) else default
        if isinstance(default, bool) or isinstance(value, bool):
            if type(value) is type(default):  # a flag is a JSON true/false, never a number
                out[key] = value
        elif isinstance(value, type(default)):
            out[key] = value
        elif isinstance(default, float) and isinstance(value, int):
            out[key] = float(value)
    return out
