# The fork server ("zygote") of the plugin daemon's local runtime; see runtime/zygote.rs.
#
# Started as `<venv python> -c <this file>` with the daemon's control socket as file descriptor 3.
# It imports the plugin SDK once, says `ready`, then for every request line (which arrives with three
# file descriptors: the plugin's stdin, stdout and stderr) forks a child that becomes the plugin:
# the child takes those descriptors as 0/1/2, moves to the plugin's directory, replaces its
# environment and import path with the plugin's, and runs the plugin's entry module as `__main__`.
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
SIGKILL = 9
FDS_PER_REQUEST = 3

libc = ctypes.CDLL(None, use_errno=True)
control = _Socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, 3)
control.setblocking(True)
zygote_pid = os.getpid()
# The import path entries that belong to this interpreter's own environment: replaced in a child.
own_site = {p for p in sys.path if "site-packages" in p or p in ("", os.getcwd())}


def send(message):
    control.sendall((json.dumps(message) + "\n").encode())


def become_plugin(request, fds, pidfds):
    """Runs in the forked child; never returns."""
    code = 70
    try:
        os.setpgid(0, 0)
        if libc.prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0 or os.getppid() != zygote_pid:
            os._exit(71)
        control.close()
        for fd in pidfds:
            os.close(fd)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        gevent.reinit()
        for resource_id, value in request.get("rlimits", []):
            resource.setrlimit(resource_id, (value, value))
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
                os.close(fd)
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
                mine, fds = fds[:FDS_PER_REQUEST], fds[FDS_PER_REQUEST:]
                if len(mine) != FDS_PER_REQUEST:
                    for fd in mine:
                        os.close(fd)
                    send({"failed": request.get("id"), "error": "request came without its three descriptors"})
                    continue
                sys.stdout.flush()
                sys.stderr.flush()
                try:
                    pid = _fork()
                except OSError as error:
                    for fd in mine:
                        os.close(fd)
                    send({"failed": request.get("id"), "error": f"fork failed: {error}"})
                    continue
                if pid == 0:
                    become_plugin(request, mine, list(children))
                for fd in mine:
                    os.close(fd)
                try:
                    os.setpgid(pid, pid)
                except OSError:
                    pass  # the child already did it, or already exited (then its pidfd says so)
                pidfd = os.pidfd_open(pid)
                children[pidfd] = pid
                poller.register(pidfd, select.POLLIN)
                send({"forked": request.get("id"), "pid": pid})


main()
