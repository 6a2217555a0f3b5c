"""gunicorn's settings for LabelHub's web process, wherever it runs (gunicorn reads ./gunicorn.conf.py;
the command line adds the bind address, workers and threads)."""

# Keep idle connections open well beyond an expert's pause between two requests. With gunicorn's
# default (2 s), a client that labels for about two seconds sends its next request on a
# connection the server is closing at that moment, and sees it dropped without an answer.
# 75 s outlasts the idle timeouts of common load balancers (60 s), which then close first.
keepalive = 75

# gunicorn 23+ opens a control socket under $XDG_RUNTIME_DIR or ~/.gunicorn/ by default. LabelHub
# never uses it (processes are stopped by signal), and a file written outside the checkout is a
# surprise on a shared machine and fails in a read-only container home: turned off.
control_socket_disable = True
