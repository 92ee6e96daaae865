"""The QGIS half of the demo: process photos with the installed plugin, then show the results.

1. Build (or take) the plugin zip and install it into a private plugin folder.
2. Run `odxrelay:processimages` through `/usr/bin/qgis_process.bin` in a clean QGIS profile, as a user's
   script or a CI job would (the Debian `qgis_process` wrapper is broken, so the binary is called).
3. In this process, load the same task with `odxrelay:loadresults` from the installed plugin (its
   results are in the local cache by then, so nothing is downloaded twice), which puts the layers in
   a group named after the task; save a .qgz project and render the map to a PNG.

Usage: python -m scripts.demo_qgis SERVER_URL IMAGES_DIR [--out DIR] [--zip ZIP] [--name NAME]
(the server URL may carry ?token=..., or set ODX_RELAY_TOKEN).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QGIS_PROCESS = "/usr/bin/qgis_process.bin"
PLUGIN = "odx_relay"


@dataclass(frozen=True)
class DemoResult:
    task_uuid: str
    outputs: dict
    project: Path
    png: Path


class QgisProcessError(RuntimeError):
    """qgis_process.bin failed; the message holds what it said."""


# --- the plugin as users install it ------------------------------------------------------------
def install_plugin(zip_path: Path, plugins_dir: Path) -> Path:
    """Unpack the plugin zip into `plugins_dir` (replacing an older copy); returns the plugin folder."""
    shutil.rmtree(plugins_dir / PLUGIN, ignore_errors=True)
    plugins_dir.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(plugins_dir)
    return plugins_dir / PLUGIN


def qgis_process_env(profile: Path, plugins_dir: Path) -> dict[str, str]:
    """A clean environment: a private profile, our plugin folder, headless Qt, and no repository on
    PYTHONPATH, so the plugin can only use what its zip carries."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(QGIS_CUSTOM_CONFIG_PATH=str(profile), QGIS_PLUGINPATH=str(plugins_dir), QT_QPA_PLATFORM="offscreen")
    return env


def qgis_process(args: list[str], profile: Path, plugins_dir: Path, timeout: float = 600) -> str:
    """Run `qgis_process.bin ARGS` from a neutral folder; stdout, or QgisProcessError with stderr."""
    profile.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([QGIS_PROCESS, *args], env=qgis_process_env(profile, plugins_dir), cwd=profile,
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise QgisProcessError(f"qgis_process {' '.join(args[:2])} failed ({done.returncode}):\n"
                               f"{done.stderr.strip()[-3000:]}\n{done.stdout.strip()[-2000:]}")
    return done.stdout


def enable_plugin(profile: Path, plugins_dir: Path) -> None:
    """`qgis_process.bin plugins enable odx_relay` (which fails when it already is: that is fine)."""
    try:
        qgis_process(["plugins", "enable", PLUGIN], profile, plugins_dir)
    except QgisProcessError as exc:
        if "already enabled" not in str(exc):
            raise


def run_algorithm(algorithm: str, parameters: dict, profile: Path, plugins_dir: Path,
                  timeout: float = 600) -> dict:
    """`qgis_process.bin run ALGORITHM --json -- NAME=VALUE ...` after enabling the plugin; the JSON reply."""
    enable_plugin(profile, plugins_dir)
    args = ["run", algorithm, "--json", "--"] + [f"{k}={v}" for k, v in parameters.items()]
    return json.loads(qgis_process(args, profile, plugins_dir, timeout))


# --- the map ------------------------------------------------------------------------------------
def render_png(project, path: Path, width: int = 1200, height: int = 900) -> Path:
    """Render the project's visible layers (in layer-tree order) to a PNG, headless."""
    from qgis.core import QgsCoordinateTransform, QgsMapRendererParallelJob, QgsMapSettings, QgsRectangle
    from qgis.PyQt.QtCore import QSize
    from qgis.PyQt.QtGui import QColor

    layers = project.layerTreeRoot().checkedLayers()
    if not layers:
        raise ValueError("no visible layers to render")
    crs = project.crs() if project.crs().isValid() else layers[0].crs()
    extent = QgsRectangle()
    extent.setMinimal()
    for layer in layers:
        transform = QgsCoordinateTransform(layer.crs(), crs, project)
        extent.combineExtentWith(transform.transformBoundingBox(layer.extent()))
    extent.scale(1.05)
    settings = QgsMapSettings()
    settings.setLayers(layers)
    settings.setDestinationCrs(crs)
    settings.setExtent(extent)
    settings.setOutputSize(QSize(width, height))
    settings.setBackgroundColor(QColor("white"))
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    path.parent.mkdir(parents=True, exist_ok=True)
    if not job.renderedImage().save(str(path), "PNG"):
        raise OSError(f"could not write {path}")
    return path


def painted_share(path: Path) -> tuple[float, int]:
    """(share of pixels that are not the white background, number of distinct colours) of a PNG."""
    from qgis.PyQt.QtGui import QColor, QImage

    image = QImage(str(path))
    step = max(1, min(image.width(), image.height()) // 150)
    painted, colours, total = 0, set(), 0
    white = QColor("white").rgb()
    for y in range(0, image.height(), step):
        for x in range(0, image.width(), step):
            pixel = image.pixel(x, y)
            total += 1
            colours.add(pixel)
            painted += pixel != white
    return painted / max(total, 1), len(colours)


def build_project(task_uuid: str, results_root: Path, plugins_dir: Path, project_path: Path,
                  png_path: Path) -> tuple[Path, Path]:
    """Load the task with the installed plugin's `loadresults` into a fresh project, save it, render it.

    Needs a QgsApplication in this process (`main` makes one)."""
    from qgis.core import QgsApplication, QgsProcessingContext, QgsProcessingFeedback, QgsProject, QgsRasterLayer

    core_plugins = str(Path(QgsApplication.pkgDataPath()) / "python" / "plugins")
    if core_plugins not in sys.path:
        sys.path.append(core_plugins)
    import processing
    from processing.core.Processing import Processing

    Processing.initialize()
    if str(plugins_dir) not in sys.path:
        sys.path.insert(0, str(plugins_dir))
    import odx_relay  # the installed copy, as QGIS would import it

    plugin = odx_relay.classFactory(None)
    plugin.initProcessing()
    project = QgsProject.instance()
    project.clear()
    context = QgsProcessingContext()
    context.setProject(project)
    processing.runAndLoadResults("odxrelay:loadresults", {"TASK": task_uuid, "RESULTS_FOLDER": str(results_root)},
                                 feedback=QgsProcessingFeedback(), context=context)
    first_raster = next((lyr for lyr in project.layerTreeRoot().checkedLayers() if isinstance(lyr, QgsRasterLayer)),
                        None)
    if first_raster is not None:
        project.setCrs(first_raster.crs())
    project_path.parent.mkdir(parents=True, exist_ok=True)
    if not project.write(str(project_path)):
        raise OSError(f"could not write {project_path}: {project.error()}")
    render_png(project, png_path)
    plugin.unload()
    return project_path, png_path


def run_demo(server_url: str, images_dir: Path, out_dir: Path = REPO / "var" / "demo", zip_path: Path | None = None,
             task_name: str = "ODX Relay demo", parameters: dict | None = None) -> DemoResult:
    """Everything above, in order; needs a QgsApplication in this process for the last step."""
    if zip_path is None:
        from scripts.package import build
        zip_path = build()
    plugins_dir, profile, results = out_dir / "plugins", out_dir / "qgis-profile", out_dir / "results"
    install_plugin(zip_path, plugins_dir)
    params = {"IMAGE_FOLDER": str(images_dir), "SERVER": server_url, "PRESET": 3, "TASK_NAME": task_name,
              "RESULTS_FOLDER": str(results), **(parameters or {})}
    reply = run_algorithm("odxrelay:processimages", params, profile, plugins_dir)
    outputs = reply["results"]
    project, png = build_project(outputs["TASK_UUID"], results, plugins_dir, out_dir / "odx-relay-demo.qgz",
                                 out_dir / "odx-relay-demo.png")
    return DemoResult(outputs["TASK_UUID"], outputs, project, png)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("server_url")
    parser.add_argument("images_dir", type=Path)
    parser.add_argument("--out", type=Path, default=REPO / "var" / "demo")
    parser.add_argument("--zip", type=Path, default=None, help="plugin zip (default: build dist/odx_relay-*.zip)")
    parser.add_argument("--name", default="ODX Relay demo", help="task name, also the layer group's name")
    args = parser.parse_args(argv)

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from qgis.core import QgsApplication
    app = QgsApplication([], False)
    app.initQgis()
    try:
        result = run_demo(args.server_url, args.images_dir.resolve(), args.out.resolve(), args.zip, args.name)
    except QgisProcessError as exc:
        print(exc, file=sys.stderr)
        return 1
    finally:
        app.exitQgis()
    share, colours = painted_share(result.png)
    print(f"task:    {result.task_uuid}")
    for key in ("ORTHOPHOTO", "DSM", "DTM", "POINT_CLOUD"):
        print(f"{key.lower():<8} {result.outputs.get(key)}")
    print(f"project: {result.project}")
    print(f"render:  {result.png} ({share:.0%} of the map painted, {colours} colours)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
