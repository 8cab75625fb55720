"""_forge — not a student: the base of the samples that forge their child's replies.

An own cell defines `_send_recipe(nodes, result)`, which writes a reply to the verifier's
pipe by hand (the child's write end is its second argument) and ends the child, so that the
verifier reads a recipe the student wrote instead of the one their function ran. The samples
that use it (`# base: _forge`) decide what the recipe says. Files starting with `_` are no
student of the corpus.
"""
# base: ../../../samples/class/ref_reference.py

# %%
import json as _json
import os as _os
import struct as _struct
import sys as _sys


def _send_recipe(nodes, result, inputs=2, constants=()):
    """Answer the current call with `nodes` (aten operations) and `result` (a value reference)."""
    reply = {"ok": True, "device": "cpu", "blocked": [], "result": result,
             "trace": {"inputs": inputs, "constants": list(constants), "nodes": nodes}, "blobs": []}
    head = _json.dumps(reply).encode()
    _os.write(int(_sys.argv[2]), _struct.pack(">I", len(head)) + head)
    _os._exit(0)


def _op(name, *args, out=(None,), **kwargs):
    return {"op": name, "args": {"t": "list", "items": list(args)}, "kwargs": kwargs, "out": list(out)}


def _ref(v):
    return {"t": "ref", "v": v}
