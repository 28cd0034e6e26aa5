"""The ``valar-pandas`` command: its subcommands, the streamed ``run``, and the demo.

:mod:`.main` parses and dispatches; :mod:`.args` makes the ``run`` flags from the options
table; :mod:`.run` checks and runs a file, :mod:`.stream` in overlapping windows, and
:mod:`.preview` prints a dry run or an estimate; :mod:`.demo` and :mod:`.reviews` are the
demo and its synthetic reviews.
"""
