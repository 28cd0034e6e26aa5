"""Progress displays: what they share, the tqdm bar, and the notebook widget.

Displays subscribe to a run's events and never steer it. :mod:`.tally` holds what every
display shares; :mod:`.progress` the tqdm bar and the choice of display; :mod:`.widget` the
ipywidgets display, imported only when a widget is made.
"""
