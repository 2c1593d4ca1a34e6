"""Reports of an experiment's stored runs: tables, figures and the findings checks of each experiment family."""
