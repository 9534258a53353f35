"""The IM domain: each module holds its request models and its routes' logic."""
