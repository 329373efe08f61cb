"""The one thing pyproject.toml cannot say without an experimental table: the C extension.

pgoutput's per-column loop in C (connectors/postgres/_tuples.c), which in Python took a third of
the connector's reading thread. Optional: where no C compiler is, the install goes on without
it, the same loop runs in Python, and the connector says so when it starts.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "connectors.postgres._tuples",
            ["connectors/postgres/_tuples.c"],
            optional=True,
            extra_compile_args=["-O2"],
        )
    ]
)
