"""The world the claims are about: the model, prompt sets, corpus, SAE training and residuals."""
