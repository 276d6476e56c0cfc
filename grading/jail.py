"""The workers' file-system jail (Linux), in two halves: what the server does once, and what each worker does.

The server (:func:`grading.worker.serve`) starts as root of its own user namespace, in its own mount namespace
(``unshare --user --mount``), so nothing done here changes the grader's view of the files. Before it imports
anything it calls :func:`hide`:

1. a fresh ``/proc`` for its PID namespace (it shows no process of the grader);
2. an empty read-only tmpfs over every hidden folder (solutions, hidden tests, submissions, the gradebook, the git
   history), ``/dev/null`` over every hidden file;
3. every mount read-only (the repository and the virtual environment with them), but a small private tmpfs on
   ``/tmp`` and ``/dev/shm`` for what imports write there.

The server keeps its capabilities (it runs no student code) because each worker needs them to get namespaces of
its own. For each submission the server forks a launcher that calls :func:`isolate` (new mount, PID, network and IPC
namespaces) and forks the worker, whose first act is :func:`confine`:

4. a fresh read-only ``/proc`` for the worker's own PID namespace (it shows no other submission, and not the server);
5. a private writable tmpfs of a fixed size on ``/tmp`` and ``/dev/shm`` (not on one that holds the worker's own
   code, such as a repository cloned under /tmp); ``HOME``, ``TMPDIR``, ``MPLCONFIGDIR`` and the caches point there;
6. every capability dropped, for good (bounding set, locked secure bits, ``no_new_privs``): the worker can no
   longer ``umount`` what hides the files nor remount anything writable. A user namespace it creates afterwards
   copies these mounts as *locked* ones, which the kernel refuses to unmount or to bind without what lies on them.

Any step that fails raises: a worker that cannot be jailed does not run student code.
"""

from __future__ import annotations

import ctypes
import os
import struct
import sys
import tempfile

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND = 32, 1024, 2048, 4096
MS_REC, MS_PRIVATE, MS_RELATIME, MS_STRICTATIME = 1 << 14, 1 << 18, 1 << 21, 1 << 24
ST_RELATIME = 4096
CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x08000000, 0x20000000, 0x40000000
SCRATCH = ("/tmp", "/dev/shm")
SERVER_SCRATCH_BYTES = 16 * 1024**2
PR_CAPBSET_DROP, PR_SET_SECUREBITS, PR_SET_NO_NEW_PRIVS = 24, 28, 38
# NOROOT, NOROOT_LOCKED, NO_SETUID_FIXUP, NO_SETUID_FIXUP_LOCKED, KEEP_CAPS_LOCKED: root gains nothing by exec.
SECURE_BITS = 0b101111

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    def encode(text: str | None) -> bytes | None:
        return None if text is None else os.fsencode(text)

    result = _libc.mount(encode(source), encode(target), encode(fstype), ctypes.c_ulong(flags), encode(data))
    _check(result, f"mount {target}")


def mount_points() -> list[str]:
    """Every mount point of this mount namespace, parents first."""
    points = []
    with open("/proc/self/mountinfo") as mounts:
        for line in mounts:
            field = line.split()[4]
            points.append(field.encode().decode("unicode_escape"))  # octal escapes such as \040 for a space
    return points


def _kept_flags(path: str) -> int:
    """The per-mount flags a remount must repeat (a user namespace may not clear the locked ones)."""
    flag = os.statvfs(path).f_flag
    kept = flag & (MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME)
    if flag & ST_RELATIME:
        kept |= MS_RELATIME
    elif not flag & MS_NOATIME:
        kept |= MS_STRICTATIME
    return kept


def within(path: str, folder: str) -> bool:
    """Whether ``path`` is ``folder`` or lies inside it (both absolute and normalised)."""
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _outermost(paths: list[str]) -> list[str]:
    """The existing paths, without those inside another one (hiding the outer hides them)."""
    chosen: list[str] = []
    for path in sorted({os.path.realpath(path) for path in paths if os.path.lexists(path)}, key=len):
        if not any(within(path, outer) for outer in chosen):
            chosen.append(path)
    return chosen


def _read_only(point: str) -> None:
    _mount(None, point, None, MS_BIND | MS_REMOUNT | MS_RDONLY | _kept_flags(point))


def _writable(except_for: list[str]) -> list[str]:
    return [
        point
        for point in mount_points()
        if point not in except_for and os.path.exists(point) and not os.statvfs(point).f_flag & MS_RDONLY
    ]


def hide(hidden: list[str]) -> None:
    """The server's half: a private ``/proc``, ``hidden`` covered, every mount read-only (capabilities kept)."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing done here propagates to the grader
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for path in _outermost(hidden):
        if os.path.isdir(path):
            _mount("hidden", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=555")
        else:
            _mount("/dev/null", path, None, MS_BIND)
            _read_only(path)
    for point in mount_points():
        if os.path.exists(point) and not os.statvfs(point).f_flag & MS_RDONLY:
            _read_only(point)
    _scratch(SERVER_SCRATCH_BYTES)  # some imports want a temporary folder; each worker gets its own over it


def isolate(mount: bool) -> bool:
    """The launcher's half: new PID, network and IPC namespaces (and mount namespace when ``mount``) for the worker
    it forks next. Raises when ``mount`` (a jailed worker must get them); otherwise returns whether it got them."""
    flags = CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | (CLONE_NEWNS if mount else 0)
    if hasattr(_libc, "unshare") and _libc.unshare(flags) == 0:  # Linux only
        return True
    if mount:
        _check(-1, "unshare the worker's namespaces")
    return False


def confine(scratch_bytes: int) -> None:
    """The worker's half, before anything of the student's runs: its own read-only ``/proc``, a private ``/tmp``,
    no capability left."""
    _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _read_only("/proc")
    _scratch(scratch_bytes)
    _drop_capabilities()


def _scratch(size: int) -> None:
    """A fresh writable tmpfs of ``size`` bytes on each scratch folder, the only thing left writable; the
    working folder, ``HOME``, ``TMPDIR`` and the caches point there."""
    scratch = _scratch_points()
    for point in scratch:
        _mount("scratch", point, "tmpfs", MS_NOSUID | MS_NODEV, f"size={max(size, 1 << 20)},mode=1777")
    if writable := _writable(scratch):
        raise OSError(f"still writable after remounting read-only: {writable}")
    os.chdir(scratch[0])
    for name in ("HOME", "TMPDIR", "MPLCONFIGDIR", "XDG_CACHE_HOME", "TORCH_HOME", "IPYTHONDIR"):
        os.environ[name] = scratch[0]
    tempfile.tempdir = None  # chosen again, from TMPDIR, by whoever asks next


def _drop_capabilities() -> None:
    with open("/proc/sys/kernel/cap_last_cap") as last:
        last_cap = int(last.read())
    for cap in range(last_cap + 1):
        _check(_libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), f"drop capability {cap} from the bounding set")
    _check(_libc.prctl(PR_SET_SECUREBITS, SECURE_BITS, 0, 0, 0), "lock the secure bits")
    header = ctypes.create_string_buffer(struct.pack("<Ii", 0x20080522, 0))  # _LINUX_CAPABILITY_VERSION_3
    data = ctypes.create_string_buffer(bytes(24))  # effective, permitted, inheritable: all empty (two words each)
    _check(_libc.capset(header, data), "capset")
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    with open("/proc/self/status") as status:
        fields = dict(line.split(":", 1) for line in status if ":" in line)
    for name in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        if int(fields[name], 16):
            raise OSError(f"{name} still {fields[name].strip()} after dropping every capability")


def _scratch_points() -> list[str]:
    """The folders of ``SCRATCH`` that a private tmpfs may cover: not one that holds the code the worker runs.

    A repository cloned under /tmp (as CI machines often do) keeps its virtual environment and the grading package
    there; covering /tmp would hide them from the worker. Such a /tmp stays visible, read-only like the rest.
    """
    code = [sys.prefix, sys.base_prefix, os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]
    code = [os.path.realpath(path) for path in code]
    points = [point for point in SCRATCH if os.path.isdir(point) and not any(within(path, point) for path in code)]
    if not points:
        raise OSError(f"no scratch folder for the worker: each of {SCRATCH} is missing or holds its code")
    return points


def self_check(secret: str, root: str) -> None:
    """Raise unless the jail, both halves as grading runs them, hides ``secret`` (a folder holding a file), keeps
    ``root`` read-only and holds; prints ``jailed`` when it does."""
    hide([secret])
    read, write = os.pipe()
    launcher = os.fork()
    if launcher == 0:
        code = 1
        try:
            os.close(read)
            isolate(mount=True)
            worker = os.fork()
            if worker == 0:
                os.dup2(write, 1)
                _check_worker(secret, root)
                os._exit(0)
            code = os.waitstatus_to_exitcode(os.waitpid(worker, 0)[1])
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as pipe:
        said = pipe.read().strip()
    status = os.waitstatus_to_exitcode(os.waitpid(launcher, 0)[1])
    if status != 0 or said != "jailed":
        raise OSError(f"the worker's half of the jail failed: {said or f'exit status {status}'}")
    print("jailed")


def _check_worker(secret: str, root: str) -> None:
    try:
        confine(1 << 20)
        if os.path.exists(secret) and os.listdir(secret):
            raise OSError(f"{secret} is still visible")
        try:
            open(os.path.join(root, ".jail-probe"), "w").close()
        except OSError:
            pass
        else:
            raise OSError(f"{root} is still writable")
        if _libc.umount2(os.fsencode(secret), 2) == 0 or (os.path.exists(secret) and os.listdir(secret)):
            raise OSError(f"{secret} could be unmounted")
        if len([name for name in os.listdir("/proc") if name.isdigit()]) != 1:
            raise OSError("the worker sees other processes")
        print("jailed", flush=True)
    except BaseException as error:
        print(f"{type(error).__name__}: {error}", flush=True)
        os._exit(1)
