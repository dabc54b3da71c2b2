"""``secrun audit``: which controls apply to a workload — planned, verified live, or for any
running process — and how exposed it is.

- :mod:`~secrun.audit.command`: the click command (exit status 0; 1 the exposure is above
  ``--threshold``; 2 ``--live`` found a control the plan says is enforced not in effect; 125
  the audit itself could not run).
- :mod:`~secrun.audit.planned`: the rows of the active plugins' ``secrun_audit``, and the
  planned residual of each category.
- :mod:`~secrun.audit.live`: the probe launched in the real sandbox (or ``--pid``), the facts
  gathered from inside and outside (the plugins' ``secrun_live_probe`` and
  ``secrun_live_facts`` too), the rows' ``expect`` checked.
- :mod:`~secrun.audit.probe` (runs inside the sandbox, standard library only) and
  :mod:`~secrun.audit.outside` (the same facts of a process, read from outside).
- :mod:`~secrun.audit.categories`: the scored categories the plugins declare; the score and
  the report in :mod:`~secrun.audit.report`, its formats in :mod:`~secrun.audit.render`.
- :mod:`~secrun.audit.rows`: the row a plugin returns (imported by plugins: keep it light).

Kept import-free: plugins import :mod:`secrun.audit.categories` and :mod:`secrun.audit.rows`
whenever they are loaded.
"""

