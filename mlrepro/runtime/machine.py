"""What the machine says about itself: AWS Deep Learning AMI marks, EC2 instance type, GPUs.

Every path is relative to a `root` ("/" in real use) so tests build a fake
machine in a temp directory. Nothing here touches the network (no instance
metadata service) or imports a framework.

The Deep Learning AMI is recognised by marks the AMI itself installs:
- `/opt/aws/dlami/` — the AMI's own tools (`bin/init`, `bin/setup-script.sh`) and
  `info/` (the security scan reports its login banner points to);
- `/etc/dlami/dlami_version` — a version file on recent DLAMIs (read when present);
- `$DLAMI_VERSION` — honoured when set (by an image or by the user) to name the version.
Any one of them makes the runtime `dlami`.

The instance type comes from DMI (`/sys/devices/virtual/dmi/id/product_name` names
the instance type on Nitro EC2 instances; `sys_vendor` is "Amazon EC2").
GPUs are the NVIDIA device files `/dev/nvidia<N>`, limited by `CUDA_VISIBLE_DEVICES`.
"""

from __future__ import annotations

import os
import re
from typing import Mapping

DLAMI_DIR = os.path.join("opt", "aws", "dlami")
DLAMI_VERSION_FILE = os.path.join("etc", "dlami", "dlami_version")
DLAMI_VERSION_ENV = "DLAMI_VERSION"
DMI_DIR = os.path.join("sys", "devices", "virtual", "dmi", "id")
DMI_VENDOR_FILE = "sys_vendor"
DMI_PRODUCT_FILE = "product_name"
EC2_VENDOR = "Amazon EC2"
DEV_DIR = "dev"
CUDA_VISIBLE_DEVICES = "CUDA_VISIBLE_DEVICES"
_NVIDIA_DEVICE = re.compile(r"^nvidia[0-9]+$")
_MAX_READ = 4096


def _under(root: str, rel: str) -> str:
    return os.path.join(root, rel)


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read(_MAX_READ).strip() or None
    except OSError:
        return None


def dlami_marks(root: str = "/", environ: Mapping[str, str] | None = None) -> list[str]:
    """The DLAMI marks present on this machine (empty: not a Deep Learning AMI)."""
    environ = {} if environ is None else environ
    marks = []
    if environ.get(DLAMI_VERSION_ENV):
        marks.append("$" + DLAMI_VERSION_ENV)
    if os.path.isdir(_under(root, DLAMI_DIR)):
        marks.append("/" + DLAMI_DIR)
    if os.path.isfile(_under(root, DLAMI_VERSION_FILE)):
        marks.append("/" + DLAMI_VERSION_FILE)
    return marks


def dlami_version(root: str = "/", environ: Mapping[str, str] | None = None) -> str | None:
    """The DLAMI's version from `$DLAMI_VERSION` or its version file, if either says."""
    environ = {} if environ is None else environ
    return environ.get(DLAMI_VERSION_ENV) or _read_text(_under(root, DLAMI_VERSION_FILE))


def ec2_instance_type(root: str = "/") -> str | None:
    """The EC2 instance type DMI reports (Nitro instances), else None."""
    dmi = _under(root, DMI_DIR)
    if _read_text(os.path.join(dmi, DMI_VENDOR_FILE)) != EC2_VENDOR:
        return None
    product = _read_text(os.path.join(dmi, DMI_PRODUCT_FILE))
    return product if product and "." in product else None


def gpu_count(root: str = "/", environ: Mapping[str, str] | None = None) -> int:
    """NVIDIA GPUs this process may use: device files, limited by CUDA_VISIBLE_DEVICES."""
    environ = {} if environ is None else environ
    try:
        devices = [n for n in os.listdir(_under(root, DEV_DIR)) if _NVIDIA_DEVICE.match(n)]
    except OSError:
        devices = []
    visible = environ.get(CUDA_VISIBLE_DEVICES)
    if visible is None:
        return len(devices)
    entries = [v.strip() for v in visible.split(",") if v.strip()]
    if not entries or entries[0] in ("-1", "NoDevFiles"):
        return 0
    return min(len(entries), len(devices))
