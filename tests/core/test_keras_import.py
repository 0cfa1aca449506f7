import subprocess
import sys

CODE = """
import os
from napari_tiled_unet.core._keras import _filtered_stderr, get_keras
with _filtered_stderr():
    os.write(2, b"I0000 port.cc oneDNN custom operations are on. blah\\n")
    os.write(2, b"a real problem\\n")
keras = get_keras()
assert keras.__version__.startswith("3")
"""


def test_tensorflow_start_up_chatter_is_dropped_and_the_rest_kept():
    done = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True)
    assert done.stderr.splitlines() == ["a real problem"]
