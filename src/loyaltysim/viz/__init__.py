"""The teaching dashboard (``loyaltysim dashboard``): a Mesa SolaraViz page over one scenario, with sliders for the
market's and the focal firm's main levers, classroom presets and live plots. :mod:`loyaltysim.viz.dashboard` builds
the model (no Solara needed); :mod:`loyaltysim.viz.page` is the page and its plots (needs the ``viz`` extra), served
by :mod:`loyaltysim.viz.app` and shown in a Jupyter notebook by :func:`loyaltysim.viz.page.explore`."""
