"""Beyond one machine: sharded indexes, and Ray for the offline jobs.

``sharding`` (stable partition of documents by id), ``sharded_index`` (build ``INDEX/shard-NNN``)
and ``sharded_search`` (fan out, merge exactly) work without Ray; ``cluster`` is the only module
that imports ``ray``, and the Ray paths (``--ray``) go through it. Nothing here is imported unless a
sharded index or ``--ray`` is used.
"""
