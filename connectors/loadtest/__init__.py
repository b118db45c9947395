"""Open-loop HTTP load testing with learned, labelled traffic (``streamsynth load``).

Requests leave on a schedule (a constant rate or k6-style ramping stages) whatever the service's
latency, as wrk2 and k6's arrival-rate executors do; latency is measured both from the scheduled
send time (no coordinated omission) and from the actual send time. Every measurement is broken
down by the event's ``label``, and an ``--expect`` expression turns the service's answers into a
confusion matrix against the ground truth the stream carries.

Modules, in the order data flows: :mod:`.schedule` (when requests leave), :mod:`.requests` (what
each one is), :mod:`.runner` (sending them), :mod:`.measure` (what came back), :mod:`.expect`
(right or wrong), :mod:`.thresholds` (pass or fail), :mod:`.summary` (the report).
"""
