"""Models: registry, the dlib ResNet port, checkpoints; each model declares its preprocessing."""
