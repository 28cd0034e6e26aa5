"""What ``import valar_pandas`` loads: no display library, no widget module."""

import json
import subprocess
import sys


def test_importing_the_package_loads_neither_the_widget_nor_ipywidgets():
    probe = (
        "import json, sys, valar_pandas; "
        "print(json.dumps(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('ipywidgets', 'IPython') or m == 'valar_pandas._display.widget')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(done.stdout) == []


def test_the_widget_module_loads_when_a_widget_is_made_and_not_before():
    probe = (
        "import sys, valar_pandas._display.progress as p; "
        "before = 'valar_pandas._display.widget' in sys.modules; "
        "p.in_kernel = lambda: True; p._widgets_available = lambda: True\n"
        "p.make_display('widget', None)\n"
        "print(before, 'valar_pandas._display.widget' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    # Outside a kernel IPython prints the widget's repr first; the verdict is the last line.
    assert done.stdout.splitlines()[-1] == "False True"
