"""What a run is measured by: its tables, the outcomes named in experiment files, and value arithmetic."""
