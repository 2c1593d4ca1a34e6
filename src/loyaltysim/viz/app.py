"""The page ``loyaltysim dashboard`` serves (``solara run loyaltysim.viz.app``): the
:func:`~loyaltysim.viz.page.DashboardPage` of one scenario.

The scenario is read once, when the server imports this module, from the file named by the environment variable
``LOYALTYSIM_DASHBOARD_SCENARIO`` (the command sets it to the absolute path it was given); nothing on the page names a
file.
"""

from __future__ import annotations

import solara

from loyaltysim.viz.dashboard import dashboard_from_environment
from loyaltysim.viz.page import DashboardPage

DASHBOARD = dashboard_from_environment()


@solara.component
def Page():
    DashboardPage(DASHBOARD)
