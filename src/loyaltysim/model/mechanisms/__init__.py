"""The market's submodels, one module each (the ODD's section 3.3 names the module of every submodel)."""
