"""The central's protocol engine, filed by job; :class:`central.core.Core` composes it.

Each module holds one job of the single-writer engine as a mixin over one shared state
(:class:`central.engine.base.EngineBase`): :mod:`.ingest` (event batches, sequencing,
duplicates, quarantine, the group flush) with :mod:`.facts` (what central reads out of
applied events), :mod:`.projection` (the lagging stock projection), :mod:`.status`
(births, deaths, health, devices), :mod:`.commands` (issue, send, resend, acks) with
:mod:`.planners` (one planner per command type) and :mod:`.records` (central's record of
each command), and :mod:`.digests` (stock digest checks). :mod:`.state` holds the plain
data they pass around.
"""
