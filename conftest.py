"""Repository-wide pytest set-up (also applies to `pytest --nbval notebooks`)."""

import os

# Progress bars carry timings and random widget ids: keep them out of regression runs,
# whether pytest is started by `make test` or by hand. Kernels inherit this variable.
os.environ.setdefault("COURSE_PROGRESS", "0")
os.environ.setdefault("PYTHONHASHSEED", "0")
