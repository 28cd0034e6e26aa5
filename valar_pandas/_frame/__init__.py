"""pandas at the edges: rows into prompts, outcomes and typed scores back into columns.

:mod:`.rows` renders a frame's rows; :mod:`.merge` attaches outcomes as new columns,
positionally, and checks a call's columns before any request; :mod:`.score_columns` turns
parsed scoring replies into typed columns.
"""
