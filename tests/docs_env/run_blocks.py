"""The docs test's Python session: executes the block files named on stdin, one per line, in one
shared namespace (a reader runs a page's Python blocks in one session), and answers each with
one line: ``ok`` or ``error <traceback as JSON>``."""
import json
import sys
import traceback

namespace = {"__name__": "__main__"}
for line in sys.stdin:
    path = line.strip()
    try:
        with open(path) as f:
            exec(compile(f.read(), path, "exec"), namespace)
        reply = "ok"
    except BaseException:  # noqa: B902 (SystemExit from a block is a failure too)
        reply = "error " + json.dumps(traceback.format_exc())
    sys.stdout.flush()
    sys.stderr.flush()
    print(f"\n@@docs-test@@ {reply}", flush=True)
