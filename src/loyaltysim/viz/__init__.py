"""The teaching dashboard (``loyaltysim dashboard``): a Mesa SolaraViz page over one scenario, with sliders for the
market's and the focal firm's main levers, classroom presets and live plots. :mod:`loyaltysim.viz.dashboard` builds
the model (no Solara needed); :mod:`loyaltysim.viz.app` is the page (needs the ``viz`` extra)."""
