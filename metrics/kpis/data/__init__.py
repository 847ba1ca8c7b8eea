"""Built-in KPIs kept as data (model-file format), loaded by metrics/kpis/packaged.py."""
