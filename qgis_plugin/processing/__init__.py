"""The Processing side of the plugin: the provider and one module per algorithm."""
