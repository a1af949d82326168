"""Fleet profiling: one sweep per cluster node through Ray, results into one store (README, "Fleet profiling").

Ray is the transport, not the isolation: inside each node's task the normal sweep runs
(hwbench.measure.runner, a worker process per trial). Needs the `fleet` extra (ray).
"""
