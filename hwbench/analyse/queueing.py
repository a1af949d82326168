"""Queueing by replay: push arrivals through c first-come-first-served servers.

This is the discrete-event core the modelled capacity and `hwbench plan --simulate` build on.
A request's latency is its wait for a free server plus its own service time; the servers are
identical and work conserving. With one server this is Lindley's recursion,
W[i+1] = max(0, W[i] + S[i] - A[i+1]) for waits W, services S and inter-arrival gaps A.

Service times come from somewhere measured (a trial's raw latencies, resampled); the result is
a MODEL of the system under load, never a measurement of it, and callers label it so.
"""

from __future__ import annotations

import heapq

import numpy as np


def replay_fifo(arrivals_s: np.ndarray, service_s: np.ndarray, servers: int = 1) -> np.ndarray:
    """Latency (wait + service, seconds) of each request, arrivals sorted ascending.

    `service_s[i]` is request i's service time. With `servers` > 1 a request starts on the
    server that frees first (one shared FIFO queue, as M/G/c).
    """
    arrivals = np.asarray(arrivals_s, dtype=np.float64)
    service = np.asarray(service_s, dtype=np.float64)
    if arrivals.shape != service.shape or arrivals.ndim != 1:
        raise ValueError(f"arrivals and service times must be 1-d and of one length, got {arrivals.shape} and {service.shape}")
    if servers < 1:
        raise ValueError(f"servers must be at least 1, got {servers}")
    if len(arrivals) and np.any(np.diff(arrivals) < 0):
        raise ValueError("arrivals must be sorted ascending")
    n = len(arrivals)
    latency = np.empty(n, dtype=np.float64)
    if servers == 1:
        free_at = -np.inf
        for i in range(n):  # Lindley's recursion on the departure time
            start = arrivals[i] if arrivals[i] > free_at else free_at
            free_at = start + service[i]
            latency[i] = free_at - arrivals[i]
        return latency
    free = [float("-inf")] * servers  # a min-heap of the times each server frees
    for i in range(n):
        earliest = free[0]
        start = arrivals[i] if arrivals[i] > earliest else earliest
        done = start + service[i]
        heapq.heapreplace(free, done)
        latency[i] = done - arrivals[i]
    return latency
