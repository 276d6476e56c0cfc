"""The course's grading pipeline for instructors (not part of the companion package students install).

``python -m grading build`` turns the otter master notebooks of ``exercises/`` into student notebooks and
autograders; ``python -m grading grade SUBMISSIONS`` grades a folder of submissions into a gradebook. Student code
runs only in a sandboxed worker process (:mod:`grading.sandbox`, :mod:`grading.worker`); the tests run here, in the
trusted process, and reach the student's functions through proxies that exchange plain tensors (:mod:`grading.wire`).
See ``book/appendix/for-instructors.md`` for the design and its limits.
"""
