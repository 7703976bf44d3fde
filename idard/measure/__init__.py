"""The IDA-RD measure: images, downscalers, SR models, distortions and statistics.

Nothing here imports Ray: this package computes IDA-RD on one machine, and the runner in
`idard.bench` distributes the same computation.
"""
