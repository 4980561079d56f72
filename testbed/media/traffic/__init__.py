"""Cross traffic: TCP bulk, constant-rate UDP and on/off UDP bursts, each marked with a DSCP.

Sources (``source``) and sinks (``sink``) are separate processes started inside nodes (one GIL each, so
a busy pacing loop never delays a call agent), from the command line in ``cli``. They speak JSON lines
on stdout (``testbed.proc``): both print ``{"event": "ready", ...}`` first, reports while they run, and
a last ``done`` (or an ``error`` and exit status 1). Whoever starts them must keep reading stdout (or
send it to a file): a full pipe would stall the sink. ``rates`` says what the rates count. The
harness builds their command lines and reads their reports with ``testbed.workload.traffic``.
"""
