"""tinyfit: a user's own small project for diloco-sweep's ``kind: python`` (docs/user-kind.md).

Its model (``model.py``), its data (``data.py`` reading ``points.csv``) and the entry that hands
them to the tool (``problem.py``: ``make``) are its own; nothing here is part of the tool.
"""
