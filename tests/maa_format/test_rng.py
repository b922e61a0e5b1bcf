import subprocess
import sys

from maa_format.rng import derive_seed, rng_for


def test_same_key_same_stream_across_processes():
    here = rng_for(7, "sample-1", "ops").integers(0, 2**31, 4).tolist()
    code = "from maa_format.rng import rng_for; print(rng_for(7, 'sample-1', 'ops').integers(0, 2**31, 4).tolist())"
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert str(here) == there.strip()


def test_streams_and_keys_differ():
    assert derive_seed(0, "a") != derive_seed(0, "b")
    assert derive_seed(0, "a", "ops") != derive_seed(0, "a", "masks")
    assert derive_seed(0, "a") != derive_seed(1, "a")
