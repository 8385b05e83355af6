"""A simulator build's output goes to its log file, not to the terminal or a JSON stdout."""

import os
import subprocess
import sys

from tritium.sim.backend.cosim import output_to_file


def test_build_output_goes_to_the_log_file(tmp_path, capfd):
    log = tmp_path / "build.log"
    print("before", flush=True)
    with output_to_file(log):
        os.write(1, b"compiler says 1\n")
        os.write(2, b"compiler says 2\n")
        subprocess.run([sys.executable, "-c", "print('child says 3')"], check=True)
    print("after", flush=True)
    out, err = capfd.readouterr()
    assert (out, err) == ("before\nafter\n", "")
    assert log.read_text() == "compiler says 1\ncompiler says 2\nchild says 3\n"
