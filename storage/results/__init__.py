"""What runs produce: explanations, simulations, scores and example scores (and whether they exist), run rows."""
