"""The study: the application on top of the engine.

Tasks and their data (``data``), training (``train``, ``tuning``, ``anchor``),
measurements (``gradstats``, ``lagprofile``, ``reasons``), tables, statistics and the
verdict (``tables``, ``stats``, ``verdict``), figures and the report (``figures``,
``figures_reasons``, ``report``, ``commands``), and the command line (``cli``, run by
``python -m bptt``).  See docs/design.md.
"""
