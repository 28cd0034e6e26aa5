"""Tables on disk: reading an input in bounded windows, writing an output atomically.

An input (parquet file or directory, CSV, JSON Lines) is checked whole before anything is
sent, typed as pandas would type it, and read in fixed windows; an output (one parquet file,
or a directory of parts and a manifest) is written so that a crash never leaves a truncated
file under its final name, and nothing is touched that this package did not write.

Modules: :mod:`.inputs` (opening and checking an input, windows), :mod:`.encoding` (strict
decoding, the first bad byte named), :mod:`.text` (CSV and JSON Lines typed and streamed as
pandas reads them), :mod:`.output` (the two kinds of output), :mod:`.manifest` (which parts
of a directory are ours), :mod:`.atomic` (private temporary files renamed when complete).
"""

from .atomic import WRITER
from .encoding import check_encoding
from .inputs import Input, open_input, windows
from .manifest import MANIFEST, PARTIAL
from .output import Output, open_output
from .text import NA_MARKERS

__all__ = [
    "MANIFEST",
    "NA_MARKERS",
    "PARTIAL",
    "WRITER",
    "Input",
    "Output",
    "check_encoding",
    "open_input",
    "open_output",
    "windows",
]
