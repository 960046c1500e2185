"""Predicting whether a model survives a quant type: the predict call, evidence, calibration, built-in predictors.

Takes ModelFacts and llama-quantize types; gives one Prediction per predictor and type, and a combined one.
"""
