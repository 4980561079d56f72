"""A stock-kernel VM for what needs sch_netem on a host whose kernel lacks it (the tests use it).

Debian's ``linux-image-amd64`` has netem; virtme-ng boots it under QEMU with the host's own files as
the guest's root (read-only, so the project's ``.venv`` works as it is) and one read-write directory
for results. KVM is off by default (TCG): the KVM of some cloud hosts cannot run stock kernels, and
TCG works everywhere; ``TESTBED_VM_KVM=1`` turns it on. Python is ~25-30x slower under TCG: fine for
probe streams of ~1000 packets/s, too slow for real-time calls.

What is needed: ``apt-get install qemu-system-x86 linux-image-amd64 busybox-static file`` and
``pip install virtme-ng`` (the project's ``vm`` extra); ``make test`` installs them where netem is missing.

In the guest, sch_netem is loaded and ``net.core.rmem_max`` raised to 32 MB (a receiver under TCG falls
behind in bursts; its socket buffer must hold them). Timing there needs the host's cores: with other work
(another VM, builds) on them, netem's timers fire late and measured delays grow by milliseconds.

Environment: ``TESTBED_VM_KERNEL`` (a ``vmlinuz`` path) picks the kernel, ``TESTBED_VM_MEMORY`` (2G) and
``TESTBED_VM_CPUS`` (2) size the VM.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testbed.errors import CapabilityError, LabError

INSTALL_HINT = (
    "apt-get install --no-install-recommends qemu-system-x86 linux-image-amd64 busybox-static file; "
    "pip install virtme-ng (or `pip install -e '.[vm]'`; `sudo make test` does both)"
)
QEMU = "qemu-system-x86_64"
RC_FILE = "vm-exit-code"
CONSOLE_FILE = "vm-console.log"
GUEST_LOG = "vm-guest.log"  # the command's stdout and stderr
SCRIPT_FILE = "vm-run.sh"


@dataclass(frozen=True)
class Kernel:
    release: str  # e.g. 6.1.0-28-amd64
    image: Path  # /boot/vmlinuz-<release>
    modules: Path  # /lib/modules/<release>


def _has_module(modules: Path, relative: str) -> bool:
    """``kernel/net/sched/sch_netem`` -> is there a .ko (maybe compressed) for it?"""
    base = modules / "kernel" / relative
    return any(base.with_name(base.name + suffix).exists() for suffix in (".ko", ".ko.xz", ".ko.zst", ".ko.gz"))


def _release_key(release: str) -> list[object]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", release)]


def _kernel_problem(image: Path) -> tuple[Kernel | None, str]:
    release = image.name.removeprefix("vmlinuz-")
    modules = Path("/lib/modules") / release
    if not image.is_file():
        return None, f"kernel image {image} does not exist"
    if not os.access(image, os.R_OK):
        return None, f"kernel image {image} is not readable (run as root)"
    if not modules.is_dir():
        return None, f"kernel {release} has no modules directory {modules}"
    if not _has_module(modules, "net/sched/sch_netem"):
        return None, f"kernel {release} has no sch_netem module"
    if not _has_module(modules, "fs/9p/9p"):
        return None, f"kernel {release} has no 9p module (the -cloud- flavour lacks it; use linux-image-amd64)"
    return Kernel(release, image, modules), ""


def find_kernel() -> tuple[Kernel | None, str]:
    """The newest stock kernel with sch_netem and 9p, or (None, why not). ``TESTBED_VM_KERNEL`` overrides."""
    chosen = os.environ.get("TESTBED_VM_KERNEL")
    if chosen:
        kernel, problem = _kernel_problem(Path(chosen))
        return kernel, (f"TESTBED_VM_KERNEL: {problem}" if problem else "")
    candidates = sorted(Path("/boot").glob("vmlinuz-*-amd64"), key=lambda p: _release_key(p.name), reverse=True)
    problems = []
    for image in candidates:
        if "-cloud-" in image.name:
            problems.append(f"{image.name} is a -cloud- kernel (no 9p)")
            continue
        kernel, problem = _kernel_problem(image)
        if kernel is not None:
            return kernel, ""
        problems.append(problem)
    found = "; ".join(problems) if problems else "no /boot/vmlinuz-*-amd64"
    return None, f"no stock kernel with sch_netem ({found})"


def find_vng() -> Path | None:
    """virtme-ng's ``vng``: next to this Python (the project's venv) first, then on PATH."""
    beside = Path(sys.executable).parent / "vng"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("vng")
    return Path(found) if found else None


def vng_version(vng: Path) -> str:
    try:
        out = subprocess.run([str(vng), "--version"], check=False, capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    match = re.search(r"(\d+(?:\.\d+)+)", out)
    return match.group(1) if match else "?"


def _is_static_elf(path: Path) -> bool:
    """True for an ELF64 executable without a PT_INTERP program header (statically linked)."""
    try:
        with path.open("rb") as f:
            header = f.read(64)
            if header[:4] != b"\x7fELF" or header[4] != 2:
                return False
            (phoff,) = struct.unpack_from("<Q", header, 0x20)
            phentsize, phnum = struct.unpack_from("<HH", header, 0x36)
            f.seek(phoff)
            table = f.read(phentsize * phnum)
        return all(struct.unpack_from("<I", table, i * phentsize)[0] != 3 for i in range(phnum))
    except (OSError, struct.error):
        return False


def _static_busybox() -> Path | None:
    """virtme-ng builds its initramfs (which loads the 9p modules) around a static busybox."""
    for name in ("busybox-static", "busybox.static", "busybox"):
        found = shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin:/usr/bin:/bin")
        if found and _is_static_elf(Path(found)):
            return Path(found)
    return None


def vm_available() -> tuple[bool, str]:
    """Can this host boot the netem VM? (True, what will run) or (False, what is missing and how to get it)."""
    missing = []
    kernel, problem = find_kernel()
    if kernel is None:
        missing.append(problem)
    vng = find_vng()
    if vng is None:
        missing.append("no vng (virtme-ng)")
    if shutil.which(QEMU) is None:
        missing.append(f"no {QEMU} (qemu-system-x86)")
    if _static_busybox() is None:
        missing.append("no statically linked busybox (busybox-static)")
    if shutil.which("file") is None:
        missing.append("no `file` command (virtme-ng uses it)")
    if os.geteuid() != 0:
        missing.append("not root (the guest runs as the host user; labs need root)")
    if missing:
        return False, f"{'; '.join(missing)}; to get it: {INSTALL_HINT}"
    assert kernel is not None and vng is not None
    return True, f"linux {kernel.release}, virtme-ng {vng_version(vng)}, QEMU TCG"


def netem_status() -> str:
    """One line for `testbed doctor`: whether netem runs natively here or in the stock-kernel VM."""
    from testbed.lab.impair import netem_works

    if netem_works():
        return f"netem: available on this kernel ({os.uname().release}); netem links and tests run natively"
    ok, detail = vm_available()
    if ok:
        return f"netem: missing on this kernel; stock-kernel VM available ({detail}) for tests"
    return f"netem: missing on this kernel; no stock-kernel VM for tests: {detail}"


# ---------------------------------------------------------------- running in the VM


def _guest_script(command: list[str], rwdir: Path, env: dict[str, str]) -> str:
    exports = "\n".join(f"export {name}={shlex.quote(value)}" for name, value in sorted(env.items()))
    return f"""#!/bin/sh
# written by testbed.lab.netemvm: runs as root inside the VM; output and exit code go to the rw directory
exec >{shlex.quote(str(rwdir / GUEST_LOG))} 2>&1
{exports}
modprobe sch_netem || echo "modprobe sch_netem failed"
sysctl -qw net.core.rmem_max=33554432 net.core.wmem_max=33554432 || true
cd {shlex.quote(os.getcwd())}
echo "guest: linux $(uname -r), $(nproc) CPUs"
printf '%s\\n' {shlex.quote("running: " + shlex.join(command))}
{shlex.join(command)}
echo $? > {shlex.quote(str(rwdir / RC_FILE))}
"""


def vng_command(kernel: Kernel, rwdir: Path, script: Path) -> list[str]:
    vng = find_vng()
    if vng is None:
        raise CapabilityError(f"netem VM unavailable: no vng (virtme-ng); to get it: {INSTALL_HINT}")
    command = [
        str(vng),
        "--run",
        str(kernel.image),
        "--memory",
        os.environ.get("TESTBED_VM_MEMORY", "2G"),
        "--cpus",
        os.environ.get("TESTBED_VM_CPUS", "2"),
        "--rwdir",
        str(rwdir),
        "--exec",
        f"sh {shlex.quote(str(script))}",
    ]
    if os.environ.get("TESTBED_VM_KVM", "") not in ("1", "true", "yes"):
        command.insert(3, "--disable-kvm")
    return command


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(none)"


def _kill_group(process: subprocess.Popen[Any]) -> None:
    """End vng and the QEMU it started (their own session, started by us) and reap vng."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def run_in_vm(command: list[str], rwdir: Path, timeout: float, env: dict[str, str]) -> int:
    """Boot the stock kernel, run ``command`` as root in the current directory with ``env`` added, and
    return its exit code. The guest sees the host's files read-only and writes only to ``rwdir``: the
    command's output goes to ``rwdir/vm-guest.log``, the VM console to ``rwdir/vm-console.log``.

    Raises CapabilityError when the VM cannot be had (the message says what to install), LabError when
    the VM did not finish (timeout, boot failure)."""
    ok, detail = vm_available()
    if not ok:
        raise CapabilityError(f"netem VM unavailable: {detail}")
    kernel, _ = find_kernel()
    assert kernel is not None
    rwdir = rwdir.resolve()
    rwdir.mkdir(parents=True, exist_ok=True)
    rc_file = rwdir / RC_FILE
    rc_file.unlink(missing_ok=True)
    script = rwdir / SCRIPT_FILE
    guest_env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "TESTBED_IN_VM": "1",
        **env,
    }
    script.write_text(_guest_script(command, rwdir, guest_env))
    vng = find_vng()
    assert vng is not None
    host_env = dict(os.environ)
    host_env["PATH"] = f"{vng.parent}:{host_env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"  # vng runs virtme-run
    console = rwdir / CONSOLE_FILE
    started = time.monotonic()
    with console.open("w") as out:
        process = subprocess.Popen(
            vng_command(kernel, rwdir, script),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=host_env,
            cwd=rwdir,
            start_new_session=True,
        )
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            raise LabError(
                f"the netem VM did not finish within {timeout:.0f}s; guest output "
                f"{rwdir / GUEST_LOG}:\n{_tail(rwdir / GUEST_LOG)}"
            ) from None
        except BaseException:  # Ctrl-C: QEMU must not outlive us
            _kill_group(process)
            raise
    elapsed = time.monotonic() - started
    try:
        return int(rc_file.read_text().strip())
    except (OSError, ValueError):
        raise LabError(
            f"the netem VM ended (vng exit {process.returncode} after {elapsed:.0f}s) without the "
            f"command's exit code; console {console}:\n{_tail(console)}\nguest output:\n"
            f"{_tail(rwdir / GUEST_LOG)}"
        ) from None
