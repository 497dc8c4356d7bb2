"""asv benchmarks of the first call in a fresh process: compile time is tracked like speed.

``timeraw_`` benchmarks: asv runs the returned code in a new interpreter and times all of
it (import, then the first forward and the first backward).  ``cold`` points
``NUMBA_CACHE_DIR`` at an empty folder, so every kernel the calls need compiles (what a new
machine or container pays once); ``warm`` uses the usual cache, filled by ``setup``, so the
kernels only load (what every later process pays).
"""

import subprocess
import sys

from numba_dwconv.bench.startup import first_call_code

COLD = """
import os, shutil, tempfile
cache = tempfile.mkdtemp(prefix="numba_dwconv_asv_cold_")
os.environ["NUMBA_CACHE_DIR"] = cache
os.environ["NUMBA_DWCONV_COMPILE_MESSAGES"] = "0"
try:
    exec({calls!r})
finally:
    shutil.rmtree(cache, ignore_errors=True)
"""


class FirstCall:
    """Import + first forward + first backward (float32, K=3, 'same') in a fresh process."""

    params = ([1, 2], ["channels_last", "channels_first"])
    param_names = ["rank", "data_format"]
    number = 1
    repeat = 1
    timeout = 600.0

    def setup(self, rank, data_format):
        # fills the usual cache for the warm variant (a no-op when it is already filled)
        subprocess.run([sys.executable, "-c", first_call_code(rank, data_format)], check=True, capture_output=True)

    def timeraw_cold(self, rank, data_format):
        return COLD.format(calls=first_call_code(rank, data_format))

    def timeraw_warm(self, rank, data_format):
        return first_call_code(rank, data_format)
