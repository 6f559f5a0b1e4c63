"""Building blocks shared by several plugins (connectors, generators, peer groups, feature helpers).

A plugin imports the plugin API, :mod:`kdsuite.methods.losses` and these components, never another plugin."""
