"""Training with the paper's recipe: targets, weight maps, augmentation."""
