"""Everything that runs inside a jail, and the one parser of what comes out of one.

A reviewer who wants to trust the grades reads this folder alone (docs/security.md maps
each threat to the module here that stops it and the test that proves it):

    sandbox.py    the bubblewrap policy every jail is built from (namespaces, read-only
                  binds, rlimits, a fresh uid), and the kernelspec launcher
    gpu.py        what a jail gets of an NVIDIA GPU (device nodes, driver, a memory share)
    env.py        the jail's settings across the launcher's process boundary (GRADING_JAIL)
    zygote.py     a warm jail per grading worker and role: torch imported once, a fork
                  per process
    guard.py      what a jailed process locks first: no fork/exec (seccomp), operators an
                  assignment forbids refused at torch's dispatcher
    ops.py        the operator policy both sides of a call enforce: the allowlist of pure
                  tensor operators, their cost bound from shapes, which numbers count as
                  constants
    protocol.py   the framing and the value codec of every pipe (data only, never pickle)
    child.py      the student's side: runs the student's cells, answers each call with a
                  recipe of the operations it ran
    verifier.py   the instructor's side, in a jail of its own: runs the test cells, replays
                  each recipe on the test's tensors, streams one verdict per cell
    replay.py     the replay of a recipe: the allowlist, each operation's cost bounded before
                  it runs, the constants counted
    testkit.py    the test-cell API (part, assert_close, ...): shipped beside each released
                  notebook, imported by the verifier
    host.py       the grader's side: starts the jails, hands the verifier its children, reads
                  its messages (bounded) under a deadline
    verdicts.py   the one parser of the verifier's verdicts, checked against the contract
    sanitize.py   the filter of every output and markdown cell a student produced

Privilege, from least to most: the student's kernel and child → the verifier jail
(trusted code on hostile data, no writes) → the grader (reads bounded verdicts, writes
the gradebook) → the instructor's browser (sees only sanitized content).
"""
