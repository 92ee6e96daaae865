"""What will be sent, in words, before anything is checked or uploaded: photos found, sub-folders searched,
the total size, files left behind and why. The log's first lines and the dialog's hint both read it."""
from __future__ import annotations

from pathlib import Path

from .inputs import UploadPlan

#: Skipped files named one by one up to this many; beyond it, the rest are counted.
NAMED_SKIPPED = 20


def megabytes(size: int) -> str:
    return f"{size / 1024 / 1024:.1f} MB"


def short_summary(plan: UploadPlan) -> str:
    """One line: "6 photos, 1.2 MB (7 files, 1 sub-folder searched)"."""
    photos = plan.photos()
    text = f"{len(photos)} photo{'s' if len(photos) != 1 else ''}, {megabytes(plan.total_bytes)}"
    details = []
    if len(plan.uploads) != len(photos):
        details.append(f"{len(plan.uploads)} files in all")
    subfolders = max(0, len(plan.folders_searched) - 1)
    if subfolders:
        details.append(f"{subfolders} sub-folder{'s' if subfolders != 1 else ''} searched")
    if plan.skipped:
        details.append(f"{len(plan.skipped)} file{'s' if len(plan.skipped) != 1 else ''} skipped")
    return text + (f" ({'; '.join(details)})" if details else "")


def summary_lines(plan: UploadPlan, folder: str | Path | None = None) -> list[str]:
    """The lines logged when a run starts (the plan's notes are among them, so they need not be told again)."""
    lines = [f"To send: {short_summary(plan)}."]
    if folder and plan.folders_searched:
        subfolders = [str(p.relative_to(folder)) for p in plan.folders_searched[1:]]
        if subfolders:
            lines.append(f"Searched {folder} and {len(subfolders)} sub-folder(s): {', '.join(subfolders)}.")
        else:
            lines.append(f"Searched {folder} (no sub-folders).")
    side = [u for u in plan.uploads if not u.is_photo]
    if side:
        lines.append("Side files: " + ", ".join(f"{u.source.name} as {u.name}" if u.source.name != u.name
                                                   else u.name for u in side) + ".")
    if plan.skipped:
        lines.append(f"{len(plan.skipped)} file(s) skipped:")
        lines += [f"  {s.path.name} ({s.path.parent}): {s.reason}" for s in plan.skipped[:NAMED_SKIPPED]]
        if len(plan.skipped) > NAMED_SKIPPED:
            lines.append(f"  … and {len(plan.skipped) - NAMED_SKIPPED} more.")
    # the notes that count skipped files ("... stay behind", "... ignored: ...") are said above, file by file
    lines += [n for n in plan.notes if "stay behind" not in n and "ignored:" not in n]
    return lines
