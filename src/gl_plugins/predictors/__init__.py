"""gl's built-in predictors, one module each; ``gl_plugins.builtin.predictors`` registers them."""
