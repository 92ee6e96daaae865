"""The photos' camera positions as a point layer, "Photos (before upload)": where the flight went, on the map
before anything is sent. The dialog's folder field adds it on the main thread as soon as a folder is chosen."""
from __future__ import annotations

from qgis.core import QgsFeature, QgsGeometry, QgsPointXY, QgsProject, QgsVectorLayer
from qgis.PyQt.QtCore import QDateTime

from ..core.photo_positions import PhotoSurvey

LAYER_NAME = "Photos (before upload)"
#: Marks the layer, so that a new run replaces the one an earlier run added instead of piling them up.
MARK = "odxrelay/photo_positions"
FIELDS = "field=name:string(254)&field=altitude:double&field=taken:datetime&field=path:string(1024)"
EXIF_TIME = "yyyy:MM:dd HH:mm:ss"


def positions_layer(survey: PhotoSurvey, name: str = LAYER_NAME) -> QgsVectorLayer:
    """A memory point layer in EPSG:4326: one point per photo with a GPS position."""
    layer = QgsVectorLayer(f"Point?crs=EPSG:4326&{FIELDS}", name, "memory")
    features = []
    for position in survey.positions:
        feature = QgsFeature(layer.fields())
        taken = QDateTime.fromString(position.taken, EXIF_TIME) if position.taken else QDateTime()
        feature.setAttributes([position.path.name, position.altitude, taken if taken.isValid() else None,
                               str(position.path)])
        feature.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(position.longitude, position.latitude)))
        features.append(feature)
    layer.dataProvider().addFeatures(features)
    layer.updateExtents()
    layer.setCustomProperty(MARK, True)
    return layer


def remove_positions(project: QgsProject) -> None:
    """Take away the layer this plugin added. Main thread only."""
    for old in list(project.mapLayers().values()):
        if old.customProperty(MARK):
            project.removeMapLayer(old.id())


def show_positions(survey: PhotoSurvey, project: QgsProject) -> QgsVectorLayer:
    """Put the layer on top of the project's layers, in place of the one shown before. Main thread only."""
    remove_positions(project)
    layer = positions_layer(survey)
    project.addMapLayer(layer, False)
    project.layerTreeRoot().insertLayer(0, layer)
    return layer
