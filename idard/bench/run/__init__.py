"""The run room: a suite computed into a run directory.

* `plan`: the suite's keys minus those the store holds, as work units.
* `runner`: the Ray driver (`execute`); `worker`: the actor that computes a unit's records.
* `jobs`: one ``idard-bench run`` end to end (plan, execute, compact, ``run.json``).
* `fullref`: full-reference suites (no SR model, no Ray).
* `validity`: a decoder's validity card, computed (its rendering is the report room's).
* `cluster`: the Ray cluster launcher (``python -m idard.bench.run.cluster await-gpus``).
* `progress`: the terminal progress of a run.

Nothing is imported here: the runner imports Ray, and the worker torch, only where used.
Arrows go one way: this room imports the suite and store rooms and `idard.measure`; it
renders nothing (the report room does).
"""
