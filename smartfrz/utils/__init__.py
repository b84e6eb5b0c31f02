"""Small neutral helpers every layer may use: batches, train/eval mode, seeding, centred Grams."""
