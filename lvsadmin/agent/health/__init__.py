"""The agent's health checker: the probes of each kind (probes.py) and the thread that schedules them (runner.py).

What the results mean for a server (rise, fall, policy) and what the kernel is told is decided elsewhere; this
package only watches, as cheaply as it can: one asyncio loop for every check of the balancer."""
