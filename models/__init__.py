"""Training side of coldproxy (torch): data, encoders, ID model, proxy model, baselines, evaluation."""
