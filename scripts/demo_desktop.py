"""The last step of the demo: the real QGIS desktop, under Xvfb, with the plugin's task panel open on the
demo's relay and the demo project's layers on the canvas; a PNG of the whole window.

QGIS runs on an Xvfb display of its own with a throw-away profile (`--profiles-path` in a temporary
folder, removed afterwards) in which the plugin is installed and enabled as the Plugin Manager would leave
it; the relay comes from ODX_RELAY_URL / ODX_RELAY_TOKEN, so nothing is saved anywhere.
`scripts/qgis_window_shot.py`, run by QGIS at start-up (`--code`), waits for the panel and the canvas,
saves the PNG and quits QGIS; a timeout here stops QGIS in any case, and Xvfb is always stopped.

Usage: python -m scripts.demo_desktop PROJECT PNG --server URL [--task UUID] [--plugin DIR] [--timeout S]
"""
from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

REPO = Path(__file__).resolve().parents[1]
QGIS = "/usr/bin/qgis.bin"  # not the /usr/bin/qgis wrapper: it only adds --noversioncheck and GRASS's libraries
SHOT_SCRIPT = Path(__file__).with_name("qgis_window_shot.py")
PLUGIN = "odx_relay"
SIZE = (1920, 1080)
#: QGIS3.ini of the throw-away profile: the plugin enabled, nothing fetched from the internet at start-up.
PROFILE_INI = f"""[PythonPlugins]
{PLUGIN}=true

[app]
plugin_installer\\checkOnStartup=false
plugin_installer\\allowExperimental=false

[core]
NewsFeed\\httpsfeedqgisorg\\disabled=true

[qgis]
checkVersion=false
"""


class WindowShotError(RuntimeError):
    """No PNG of the window, or not the one wanted; the message says why in words."""


def split_token(server_url: str) -> tuple[str, str]:
    """(URL without ?token=, token) — the panel reads them from ODX_RELAY_URL and ODX_RELAY_TOKEN."""
    parts = urlsplit(server_url)
    query = parse_qs(parts.query)
    token = (query.pop("token", [""]) or [""])[0]
    url = urlunsplit(parts._replace(query=urlencode(query, doseq=True)))
    return url, token or os.environ.get("ODX_RELAY_TOKEN", "")


def make_profile(root: Path, plugin_dir: Path) -> Path:
    """A fresh `default` profile under `root` (what --profiles-path expects) with the plugin installed."""
    profile = root / "profiles" / "default"
    shutil.copytree(plugin_dir, profile / "python" / "plugins" / PLUGIN,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (profile / "QGIS").mkdir(parents=True)
    (profile / "QGIS" / "QGIS3.ini").write_text(PROFILE_INI, encoding="utf-8")
    return profile


def stop_group(process: subprocess.Popen) -> None:
    """Stop a process started in a session of its own, and whatever it started: TERM, then KILL; reaped."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(5)
            break
        except subprocess.TimeoutExpired:
            continue
    try:
        os.killpg(process.pid, signal.SIGKILL)  # anything the leader left behind in its group
    except ProcessLookupError:
        pass
    process.wait()


def start_xvfb(log, timeout: float = 15) -> tuple[subprocess.Popen, str]:
    """Xvfb on a free display number (it says which through -displayfd); (process, ":N")."""
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        raise WindowShotError("Xvfb is not installed: `make setup` installs it (Debian package xvfb)")
    read_fd, write_fd = os.pipe()
    try:
        process = subprocess.Popen([xvfb, "-displayfd", str(write_fd), "-screen", "0", f"{SIZE[0]}x{SIZE[1]}x24",
                                    "-nolisten", "tcp"], pass_fds=(write_fd,), stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        os.close(write_fd)
        write_fd = -1
        said = b""
        deadline = time.monotonic() + timeout
        while not said.endswith(b"\n") and time.monotonic() < deadline and process.poll() is None:
            if select.select([read_fd], [], [], 0.2)[0]:
                chunk = os.read(read_fd, 64)
                if not chunk:
                    break
                said += chunk
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)
    if not said.strip().isdigit():
        stop_group(process)
        raise WindowShotError(f"Xvfb did not start within {timeout:.0f} s (exit code {process.returncode})")
    return process, f":{said.strip().decode()}"


def shoot_window(project: Path, png: Path, server_url: str, plugin_dir: Path, task_uuid: str = "",
                 timeout: float = 90, log_path: Path | None = None) -> dict:
    """Start QGIS under Xvfb on `project`, save the window with the task panel to `png`; the JSON the
    start-up script wrote ({"ok", "message", "tasks", "seconds"}), or WindowShotError. Xvfb and QGIS are
    stopped and reaped before it returns, whatever happened."""
    if not (plugin_dir / "__init__.py").is_file():
        raise WindowShotError(f"no installed plugin in {plugin_dir} (the QGIS step of the demo installs it)")
    if not Path(QGIS).exists():
        raise WindowShotError(f"{QGIS} is not installed: `make setup` installs it (Debian package qgis)")
    png, log_path = png.resolve(), (log_path or png.with_suffix(".log")).resolve()
    png.unlink(missing_ok=True)
    url, token = split_token(server_url)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="odx-relay-desktop-") as tmp, log_path.open("wb") as log:
        root = Path(tmp)
        make_profile(root, plugin_dir)
        status = root / "status.json"
        runtime = root / "runtime"
        runtime.mkdir(mode=0o700)
        xvfb, display = start_xvfb(log)
        try:
            env = {k: v for k, v in os.environ.items() if k not in (
                "PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "XAUTHORITY", "QGIS_PLUGINPATH", "QGIS_CUSTOM_CONFIG_PATH")}
            env.update(DISPLAY=display, QT_QPA_PLATFORM="xcb", XDG_RUNTIME_DIR=str(runtime),
                       XDG_CACHE_HOME=str(root / "cache"), ODX_RELAY_URL=url, ODX_RELAY_TOKEN=token,
                       ODX_DEMO_SHOT=str(png), ODX_DEMO_STATUS=str(status), ODX_DEMO_TASK=task_uuid,
                       ODX_DEMO_WAIT=str(max(10.0, timeout - 30)), ODX_DEMO_SIZE=f"{SIZE[0]}x{SIZE[1]}")
            argv = [QGIS, "--profiles-path", str(root), "--nologo", "--noversioncheck",
                    "--project", str(project.resolve()), "--code", str(SHOT_SCRIPT)]
            qgis = subprocess.Popen(argv, env=env, cwd=root, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
            try:
                qgis.wait(timeout)
            except subprocess.TimeoutExpired:
                raise WindowShotError(f"QGIS did not finish within {timeout:.0f} s and was stopped "
                                      f"(its output: {log_path})") from None
            finally:
                stop_group(qgis)
        finally:
            stop_group(xvfb)
        if not status.is_file():
            raise WindowShotError(f"QGIS ended (exit code {qgis.returncode}) before the start-up script "
                                  f"reported; its output: {log_path}")
        report = json.loads(status.read_text(encoding="utf-8"))
    if not png.is_file():
        raise WindowShotError(f"{report['message']} (QGIS's output: {log_path})")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("project", type=Path)
    parser.add_argument("png", type=Path)
    parser.add_argument("--server", required=True, help="the relay's URL (may carry ?token=...)")
    parser.add_argument("--task", default="", help="the task to show selected (default: the newest)")
    parser.add_argument("--plugin", type=Path, default=REPO / "var" / "demo" / "qgis" / "plugins" / PLUGIN,
                        help="the installed plugin folder to copy into the profile")
    parser.add_argument("--timeout", type=float, default=90)
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        report = shoot_window(args.project, args.png, args.server, args.plugin, args.task, args.timeout)
    except WindowShotError as exc:
        print(f"no screenshot of QGIS: {exc}", file=sys.stderr)
        return 1
    print(f"{'window: ' if report['ok'] else 'window (incomplete): '}{args.png} "
          f"({report['message']}; {time.monotonic() - started:.0f} s)")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
