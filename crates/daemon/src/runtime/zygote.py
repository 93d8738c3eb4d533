# The fork server ("zygote") of the plugin daemon's local runtime; see runtime/zygote.rs.
#
# Started as `<venv python> -c <this file>` with the daemon's control socket as file descriptor 3.
# It imports the plugin SDK once, says `ready`, then for every request line (which arrives with three
# file descriptors: the plugin's stdin, stdout and stderr, then the sandbox's cgroup and Landlock
# descriptors) forks a child that becomes the plugin: the child takes the first three as 0/1/2,
# applies the sandbox's steps (mount namespace, cgroups, limits, uid, Landlock), moves to the
# plugin's directory, replaces its environment and import path with the plugin's, and runs the
# plugin's entry module as `__main__`.
# The zygote stays the parent of every child: it reaps each one (through a pidfd) and reports its
# exit status on the control socket. Children die with the zygote (parent-death signal), and the
# zygote dies with the daemon.
import array
import os
import select
import socket
import sys

# The originals, before the SDK's gevent patching replaces them with cooperative versions.
_fork = os.fork
_waitpid = os.waitpid
_close = os.close  # gevent's replacement defers closing a pipe to its hub, which never runs here
_write = os.write
_poll = select.poll
_Socket = socket.socket

import ctypes  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import runpy  # noqa: E402
import traceback  # noqa: E402

import dify_plugin  # noqa: E402,F401  (imports the SDK and applies its gevent patching)
import gevent  # noqa: E402

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
SIGKILL = 9
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
libc.syscall.restype = ctypes.c_long
control = _Socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, 3)
control.setblocking(True)
zygote_pid = os.getpid()
# The import path entries that belong to this interpreter's own environment: replaced in a child.
own_site = {p for p in sys.path if "site-packages" in p or p in ("", os.getcwd())}


def send(message):
    control.sendall((json.dumps(message) + "\n").encode())


def check(result, what):
    if result != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{what}: {os.strerror(error)}")


def enter_sandbox(steps, fds):
    """The sandbox's child-side steps, in the order of the daemon's own pre-exec hook."""
    if steps["binds"]:
        os.unshare(os.CLONE_NEWNS)
        check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "make / private")
        for source, target in steps["binds"]:
            check(libc.mount(source.encode(), target.encode(), None, MS_BIND | MS_REC, None), f"bind {source} on {target}")
    cgroups, fds = fds[: steps["cgroups"]], fds[steps["cgroups"] :]
    for fd in cgroups:
        _write(fd, b"0")
        _close(fd)
    for resource_id, value in steps["rlimits"]:
        resource.setrlimit(resource_id, (value, value))
    uid = steps["uid"]
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
        # A credential change makes the process non-dumpable, which `exec` would have undone.
        check(libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0), "dumpable")
    # A uid change clears the parent-death signal: set it again.
    check(libc.prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0), "parent-death signal")
    if steps["landlock"]:
        ruleset = fds[0]
        check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
        check(libc.syscall(steps["landlock_restrict_self"], ruleset, 0), "landlock_restrict_self")
        _close(ruleset)


def become_plugin(request, fds, pidfds):
    """Runs in the forked child; never returns."""
    code = 70
    try:
        os.setpgid(0, 0)
        if libc.prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0 or os.getppid() != zygote_pid:
            os._exit(71)
        control.close()
        for fd in pidfds:
            _close(fd)
        stdio, extra = fds[:3], fds[3:]
        for target, fd in enumerate(stdio):
            os.dup2(fd, target)
        for fd in stdio:
            if fd > 2:
                _close(fd)
        gevent.reinit()
        if request.get("sandbox"):
            enter_sandbox(request["sandbox"], extra)
        if os.getppid() != zygote_pid:
            os._exit(71)
        sys.pycache_prefix = request["env"].get("PYTHONPYCACHEPREFIX")
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.path[:] = [request["cwd"]] + request["site"] + [p for p in sys.path if p not in own_site]
        sys.executable = request["executable"]
        sys.prefix = sys.exec_prefix = request["prefix"]
        sys.argv = [os.path.join(request["cwd"], request["module"] + ".py")]
        import importlib

        importlib.invalidate_caches()
        sys.modules["__dify_fork_start__"] = sys  # lets a plugin tell that it was forked
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(code)
    try:
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exit:
        if exit.code is None:
            code = 0
        elif isinstance(exit.code, int):
            code = exit.code
        else:
            print(exit.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    os._exit(code)


def main():
    send({"ready": True, "pid": zygote_pid, "modules": sorted({name.partition(".")[0] for name in sys.modules})})
    poller = _poll()
    poller.register(control.fileno(), select.POLLIN)
    children = {}  # pidfd -> pid
    buffer = b""
    fds = []
    while True:
        for fd, _ in poller.poll():
            if fd != control.fileno():
                pid = children.pop(fd)
                poller.unregister(fd)
                _close(fd)
                _, status = _waitpid(pid, 0)
                send({"exit": pid, "status": status})
                continue
            data, ancillary, _, _ = control.recvmsg(65536, socket.CMSG_SPACE(16 * array.array("i").itemsize))
            if not data:
                os._exit(0)
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    received = array.array("i")
                    received.frombytes(payload[: len(payload) - len(payload) % received.itemsize])
                    fds.extend(received)
            buffer += data
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                request = json.loads(line)
                count = int(request.get("fds", 3))
                mine, fds = fds[:count], fds[count:]
                if len(mine) != count or count < 3:
                    for fd in mine:
                        _close(fd)
                    send({"failed": request.get("id"), "error": f"request came without its {count} descriptors"})
                    continue
                sys.stdout.flush()
                sys.stderr.flush()
                try:
                    pid = _fork()
                except OSError as error:
                    for fd in mine:
                        _close(fd)
                    send({"failed": request.get("id"), "error": f"fork failed: {error}"})
                    continue
                if pid == 0:
                    become_plugin(request, mine, list(children))
                for fd in mine:
                    _close(fd)
                try:
                    os.setpgid(pid, pid)
                except OSError:
                    pass  # the child already did it, or already exited (then its pidfd says so)
                pidfd = os.pidfd_open(pid)
                children[pidfd] = pid
                poller.register(pidfd, select.POLLIN)
                send({"forked": request.get("id"), "pid": pid})


main()
