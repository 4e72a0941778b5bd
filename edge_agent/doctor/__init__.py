"""``edge-agent doctor``: every check a technician needs, each with a plain-language fix.

Each check is a function returning :class:`edge_agent.doctor.result.CheckResult`,
testable on its own, in one module per area: :mod:`~edge_agent.doctor.local` (config,
database, disk, state directory, devices), :mod:`~edge_agent.doctor.broker`,
:mod:`~edge_agent.doctor.central`, :mod:`~edge_agent.doctor.service` (systemd, the running
agent). :func:`edge_agent.doctor.run.run_checks` runs them in order; the CLI renders them.
"""
