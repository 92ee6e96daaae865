"""Widgets: the settings page (QGIS Options and a dialog) and the Server field of the algorithms."""
