"""The plugin's logic without Qt: what to send, presets, progress, which file is which product, names
and styles, the results cache, and the task runner. Nothing here imports qgis."""
