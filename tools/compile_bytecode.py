"""Byte-compile the installed packages with one process per core (``make install``).

pip compiles every installed Python file one at a time, about half of a fresh install's
time on 2 cores; ``make install`` tells pip not to and runs this instead. The bytecode must
be written once: where ``PYTHONDONTWRITEBYTECODE`` is set, nothing else writes it, and every
kernel would compile torch again at each start.

A file that does not compile is skipped, as pip skips it (torch ships one that only Python
3.12+ can compile). Where no process pool can be made (no shared-memory semaphores in some
containers), one process does it all.

Usage: python tools/compile_bytecode.py [FOLDER]   (default: this interpreter's site-packages)
"""

from __future__ import annotations

import compileall
import sys
import sysconfig


def compile_folder(folder: str) -> None:
    try:
        compileall.compile_dir(folder, quiet=2, workers=0)
    except (OSError, NotImplementedError):
        compileall.compile_dir(folder, quiet=2, workers=1)


if __name__ == "__main__":
    compile_folder(sys.argv[1] if len(sys.argv) > 1 else sysconfig.get_paths()["purelib"])
