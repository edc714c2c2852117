"""The Ray side: a run (runner), a Tune config to a trial (trial), the trial itself (trainable),
Ray started and stopped (ray_private, local_ray), callbacks (loggers, progress, lean), stop
signals and the fault hooks of the tests (signals, faults)."""
