"""What every netlab process shares below the API: the one place that speaks netlink (net), the
cluster file and its address plan (cluster), and the lab's layout on disk and in the kernel; and
the small daemon kit every long-running component uses (runner, metrics, serving, logs, clock)."""
