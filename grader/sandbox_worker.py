"""The program that runs inside the sandbox process (the untrusted side).

It is not imported by the grader: ``execute.py`` ships ``wire.py`` and this file
as source text to a fresh ``python -I`` process. It executes the notebook's code
cells in an IPython shell (magics work, shell escapes are refused, plots go to
the Agg backend), then answers call requests with data only. Nothing it reports
is believed: every verdict is computed by the grader from the numbers it sends.
"""
# wire.py's names (read_message, write_message, fd_reader, encode_value,
# npy_to_array, ...) are defined above this line when the sandbox is launched.
import builtins
import os
import signal
import sys
import types

CHANNEL_IN, CHANNEL_OUT = int(sys.argv[1]), int(sys.argv[2])
GRADED = ("activation", "d_activation", "forward", "backward")
#: Cell magics that would start another program; they are reported, not run.
BLOCKED_CELL_MAGICS = frozenset({
    "bash", "sh", "script", "system", "sx", "perl", "ruby", "python", "python2",
    "python3", "pypy", "cmd", "powershell", "js", "javascript",
})


class Deadline(BaseException):
    """Raised by the alarm; a BaseException so `except Exception:` in student code does not swallow it."""


def _on_alarm(signum, frame):
    raise Deadline()


signal.signal(signal.SIGALRM, _on_alarm)
refused_commands: list[str] = []


def _make_shell():
    """An IPython shell that behaves like a headless, offline Jupyter kernel."""
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    class SandboxShell(InteractiveShell):
        def system(self, cmd):
            refused_commands.append(str(cmd))
            print(f"[grader] shell command not run: {cmd}", file=sys.stderr)

        system_raw = system_piped = system

        def getoutput(self, cmd, split=True, depth=0):
            self.system(cmd)
            return []

        def enable_gui(self, gui=None):
            return None

        def enable_matplotlib(self, gui=None):
            import matplotlib
            matplotlib.use("Agg")
            return "agg", "agg"

        def run_cell_magic(self, magic_name, line, cell):
            if magic_name in BLOCKED_CELL_MAGICS:
                return self.system(f"%%{magic_name} {line}".strip())
            return super().run_cell_magic(magic_name, line, cell)

    config = Config()
    config.HistoryManager.enabled = False
    config.InteractiveShell.colors = "nocolor"
    return SandboxShell.instance(config=config)


def _preload():
    """Import what nearly every submission imports, before the notebook arrives."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot  # noqa: F401
    except Exception:
        pass


def _no_input(prompt=""):
    raise EOFError("input() is not available while grading")


shell = _make_shell()
_preload()
builtins.input = _no_input
send = lambda header, blobs=None: write_message(CHANNEL_OUT, header, blobs)  # noqa: E731
receive = fd_reader(CHANNEL_IN)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


def _describe(error: BaseException) -> str:
    if isinstance(error, Deadline):
        return "time limit"
    text = f"{type(error).__name__}: {error}"
    return text if len(text) <= 300 else text[:297] + "..."


def run_cell(index: int, source: str, timeout: float) -> None:
    refused_before = len(refused_commands)
    status, error = "ok", None
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        result = shell.run_cell(source, store_history=False, silent=False)
        failure = result.error_before_exec or result.error_in_exec
        if isinstance(failure, Deadline):
            status, error = "timeout", "time limit"
        elif failure is not None:
            status, error = "error", _describe(failure)
    except Deadline:
        status, error = "timeout", "time limit"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    _flush()
    send({"op": "cell", "index": index, "status": status, "error": error,
          "refused": refused_commands[refused_before:]})


def _kind(obj) -> str | None:
    if obj is None or not callable(obj):
        return None
    if isinstance(obj, types.FunctionType):
        return "lambda" if obj.__name__ == "<lambda>" else "function"
    if isinstance(obj, (types.BuiltinFunctionType, getattr(__import__("numpy"), "ufunc"))):
        return "builtin"
    return "other callable"


def describe_functions() -> dict:
    return {name: _kind(shell.user_ns.get(name)) for name in GRADED}


def call(request: dict, blobs: list, timeout: float) -> tuple[dict, list]:
    out: list = []
    args = [decode_value(arg, blobs) for arg in request["args"]]
    function = shell.user_ns.get(request["fn"])
    if function is None or not callable(function):
        return {"status": "missing"}, out
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        value = function(*args)
        reply = {"status": "ok", "value": encode_value(value, out)}
        if request.get("args_after", True):
            reply["args_after"] = [encode_value(arg, out) for arg in args]
    except Deadline:
        reply, out = {"status": "timeout", "error": "time limit"}, []
    except BaseException as error:  # SystemExit and KeyboardInterrupt are failures of the call too
        reply, out = {"status": "raised", "error": _describe(error)}, []
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    return reply, out


def main() -> None:
    send({"op": "ready", "pid": os.getpid()})
    while True:
        header, blobs = read_message(receive)
        op = header.get("op")
        if op == "exec":
            for cell in header["cells"]:
                run_cell(cell["index"], cell["source"], header["cell_timeout"])
            send({"op": "exec_done", "functions": describe_functions()})
        elif op == "call":
            for request in header["calls"]:
                reply, out = call(request, blobs, header["call_timeout"])
                _flush()
                send({"op": "result", **reply}, out)
        else:
            break


main()
