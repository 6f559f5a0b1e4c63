"""The built-in method plugins, one file each. Every module here is imported by discovery
(:func:`kdsuite.methods.registry.discover`); a plugin imports the plugin API, the loss primitives and
:mod:`kdsuite.methods.components`, never another plugin."""
