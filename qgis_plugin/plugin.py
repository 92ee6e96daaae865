"""The plugin object QGIS creates: registers the Processing provider and the settings page."""
from __future__ import annotations

from qgis.core import QgsApplication

from .processing.base import watch_for_quit
from .processing.provider import OdxRelayProvider


class ODXRelayPlugin:
    def __init__(self, iface):
        self.iface = iface
        self.provider: OdxRelayProvider | None = None
        self.options_factory = None

    def initProcessing(self) -> None:
        if self.provider is None:
            watch_for_quit()
            self.provider = OdxRelayProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:
        self.initProcessing()
        if self.iface is not None:
            from .gui.settings_widget import SettingsPageFactory
            self.options_factory = SettingsPageFactory()
            self.iface.registerOptionsWidgetFactory(self.options_factory)

    def unload(self) -> None:
        if self.options_factory is not None:
            self.iface.unregisterOptionsWidgetFactory(self.options_factory)
            self.options_factory = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
