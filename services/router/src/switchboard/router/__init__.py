"""Switchboard router: conversation state, skill-based assignment, SLA escalation.

The pure domain lives in :mod:`switchboard.router.rules` (the rules file),
:mod:`~switchboard.router.calendar` (business hours), :mod:`~switchboard.router.state`
and :mod:`~switchboard.router.assignment` (the indexed roster and selection),
:mod:`~switchboard.router.timers` and :mod:`~switchboard.router.engine` (event handlers
that return effects), and :mod:`~switchboard.router.snapshot` (changelog records).
"""

__version__ = "0.1.0"
