"""An example segbench plugin: a dataset type, a model source and a metric group, one module each.

Each module declares itself to segbench's registries when it is imported;
segbench imports them through the entry points of this distribution
(``segbench_example-0.1.dist-info/entry_points.txt``, which a
``pyproject.toml`` writes on ``pip install``):

- :mod:`segbench_example.stripes`: ``type: stripes``, procedural images of vertical stripes;
- :mod:`segbench_example.threshold`: ``type: threshold``, a model that needs no weights;
- :mod:`segbench_example.area`: the ``area`` metric group, relative error of each class's area.

This file imports none of them: nothing registers until segbench loads its plugins.
"""
