"""records: what a sweep stores, and the one way it is read (docs/architecture.md).

Trial identity (``identity``), the column declarations and their roles (``columns``), the trust
rule every reader applies (``trust``), the one reader (``reader``), and the map a map search
refines from its rows (``lattice_map``), which the search and its report both replay. No Ray,
no plotly, no torch: the sweep service writes through it, ``analysis`` and a pandas user read
through it.
"""

from .identity import ID_SETTINGS_V1, RUNTIME_FIELDS, row_trial_id, setting_kind, trial_id

__all__ = ["trial_id", "row_trial_id", "setting_kind", "ID_SETTINGS_V1", "RUNTIME_FIELDS"]
