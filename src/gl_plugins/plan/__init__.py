"""Planning a quantization: TensorPlan and its resolution, llama.cpp's own type choice, tensor maps, lint, recipes.

Takes ModelFacts and a recipe, a hand-written map or a stock type; gives every tensor's type, bytes and why.
"""
