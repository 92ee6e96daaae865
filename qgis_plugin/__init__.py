"""ODX Relay for QGIS: process drone photos on NodeODX nodes or an ODX Relay from the Processing toolbox.

QGIS calls `classFactory`; everything Qt-bound is imported there, so the pure modules under `core/`
can be imported (and tested) without a QGIS instance.
"""


def classFactory(iface):
    from .plugin import ODXRelayPlugin
    return ODXRelayPlugin(iface)
