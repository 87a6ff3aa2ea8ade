"""dns-staleness-exporter: measures how long DNS serves records that Kubernetes already changed."""

from pathlib import Path

__version__ = "0.1.0"


def _revision(package: Path = Path(__file__).parent) -> str:
    """The source revision: baked into the image as REVISION (Dockerfile), else read from the
    git checkout that an editable install runs from, else "unknown"."""
    try:
        baked = package / "REVISION"
        if baked.is_file():
            return baked.read_text().strip() or "unknown"
        git = package.parent / ".git"
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head
        ref = head.removeprefix("ref: ")
        if (git / ref).is_file():
            return (git / ref).read_text().strip()
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0]
    except OSError:
        pass
    return "unknown"


REVISION = _revision()
